//! The Docker packaging: there is no Docker engine on the build machines, so this test reads the
//! `Dockerfile`, `.dockerignore` and `docker-compose.yml` and checks the properties the image must
//! have (multi-stage, non-root, volume, ports, health check, default command) and that every path
//! the build copies exists and survives `.dockerignore`.

use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};
use serde_yaml_ng::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// One Dockerfile instruction: its keyword (upper case) and its arguments (continuations joined).
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

fn parse_dockerfile(text: &str) -> Vec<Instruction> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        instructions.push(Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_string(),
        });
        current.clear();
    }
    assert!(
        current.is_empty(),
        "Dockerfile ends inside a continued line"
    );
    instructions
}

/// Parses an exec-form (`["a", "b"]`) instruction argument.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args)
        .unwrap_or_else(|e| panic!("not an exec-form JSON array: {args}: {e}"))
}

/// `.dockerignore` with Docker's semantics: patterns are matched against a path and each of its
/// parent directories, `!` re-includes, and the last matching pattern wins.
struct DockerIgnore {
    patterns: Vec<(bool, GlobMatcher)>,
}

impl DockerIgnore {
    fn load(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).expect("read .dockerignore");
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|line| {
                let (include, pattern) = match line.strip_prefix('!') {
                    Some(rest) => (true, rest),
                    None => (false, line),
                };
                let pattern = pattern.trim_start_matches('/').trim_end_matches('/');
                let glob = GlobBuilder::new(pattern)
                    .literal_separator(true)
                    .build()
                    .unwrap_or_else(|e| panic!("bad .dockerignore pattern {line:?}: {e}"));
                (include, glob.compile_matcher())
            })
            .collect();
        DockerIgnore { patterns }
    }

    fn is_excluded(&self, path: &str) -> bool {
        let mut candidates = vec![path.to_string()];
        let mut prefix = Path::new(path).parent();
        while let Some(p) = prefix.filter(|p| !p.as_os_str().is_empty()) {
            candidates.push(p.to_string_lossy().into_owned());
            prefix = p.parent();
        }
        let mut excluded = false;
        for (include, glob) in &self.patterns {
            if candidates.iter().any(|c| glob.is_match(c)) {
                excluded = !include;
            }
        }
        excluded
    }
}

/// Every file below `dir` (relative to the repository root), skipping `target/`.
fn files_below(root: &Path, rel: &str) -> Vec<String> {
    let path = root.join(rel);
    if path.is_file() {
        return vec![rel.to_string()];
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "target" {
            continue;
        }
        out.extend(files_below(root, &format!("{rel}/{name}")));
    }
    out
}

/// Whether a file is read by `cargo build --release --bin agent-gate`: crate manifests, build
/// scripts and library/binary sources (not tests, benches, examples or snapshots).
fn needed_for_build(file: &str) -> bool {
    file.ends_with("Cargo.toml")
        || file.ends_with("build.rs")
        || file.contains("/src/") && !file.contains("/snapshots/")
}

/// Files a Rust source pulls in at compile time outside its `#[cfg(test)]` module:
/// `include_str!`/`include_bytes!` (relative to the source file) and `tools!("...")` manifests
/// (relative to the crate root).
fn files_the_source_includes(root: &Path, file: &str) -> Vec<String> {
    if !file.ends_with(".rs") {
        return Vec::new();
    }
    let text = std::fs::read_to_string(root.join(file)).expect("read source");
    // Unit-test modules (by convention at the end of a file) are not part of the release build.
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    // Comments (and doc examples in them) are not compiled into the binary.
    let text: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = Path::new(file).parent().expect("file in a directory");
    let crate_dir = Path::new(file.split("/src/").next().expect("crate dir"));
    let mut out = Vec::new();
    for (marker, base) in [
        ("include_str!(\"", dir),
        ("include_bytes!(\"", dir),
        ("tools!(\"", crate_dir),
    ] {
        for (start, _) in text.match_indices(marker) {
            let rest = &text[start + marker.len()..];
            let Some(end) = rest.find('"') else { continue };
            let mut path = base.to_path_buf();
            for part in Path::new(&rest[..end]).components() {
                match part {
                    std::path::Component::ParentDir => {
                        path.pop();
                    }
                    other => path.push(other),
                }
            }
            out.push(path.to_string_lossy().into_owned());
        }
    }
    out
}

#[test]
fn dockerfile_is_multi_stage_non_root_and_serves_by_default() {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("Dockerfile")).expect("read Dockerfile");
    let instructions = parse_dockerfile(&text);
    let stages: Vec<&Instruction> = instructions
        .iter()
        .filter(|i| i.keyword == "FROM")
        .collect();
    assert!(
        stages.len() >= 2,
        "multi-stage build expected, found {} FROM",
        stages.len()
    );
    assert!(
        stages[0].args.starts_with("rust:${RUST_VERSION}") || stages[0].args.starts_with("rust:"),
        "the build stage uses the official Rust image, got {}",
        stages[0].args
    );
    let runtime = &stages[stages.len() - 1].args;
    assert!(
        runtime.contains("distroless") || runtime.contains("debian") && runtime.contains("slim"),
        "the runtime stage is distroless or slim Debian, got {runtime}"
    );

    // Everything after the last FROM describes the runtime image.
    let last_from = instructions
        .iter()
        .rposition(|i| i.keyword == "FROM")
        .expect("FROM");
    let runtime_part = &instructions[last_from..];
    let user = runtime_part
        .iter()
        .rfind(|i| i.keyword == "USER")
        .expect("the runtime stage sets USER");
    let uid = user.args.split(':').next().expect("user");
    assert!(
        uid != "root" && uid != "0",
        "runs as a non-root user, got {}",
        user.args
    );

    assert!(
        runtime_part
            .iter()
            .any(|i| i.keyword == "VOLUME" && i.args.contains("/app/data")),
        "VOLUME /app/data"
    );
    let exposed: Vec<&str> = runtime_part
        .iter()
        .filter(|i| i.keyword == "EXPOSE")
        .flat_map(|i| i.args.split_whitespace())
        .collect();
    assert!(
        exposed.contains(&"8443") && exposed.contains(&"8080"),
        "EXPOSE 8443 8080, got {exposed:?}"
    );

    let health = runtime_part
        .iter()
        .find(|i| i.keyword == "HEALTHCHECK")
        .expect("HEALTHCHECK");
    let cmd = health
        .args
        .split_once("CMD")
        .expect("HEALTHCHECK ... CMD")
        .1
        .trim();
    let cmd = exec_form(cmd);
    assert!(
        cmd[0].ends_with("/agent-gate") && cmd[1] == "healthcheck",
        "health check runs the binary: {cmd:?}"
    );

    let entrypoint = exec_form(
        &runtime_part
            .iter()
            .rfind(|i| i.keyword == "ENTRYPOINT")
            .expect("ENTRYPOINT")
            .args,
    );
    let command = exec_form(
        &runtime_part
            .iter()
            .rfind(|i| i.keyword == "CMD")
            .expect("CMD")
            .args,
    );
    assert!(
        entrypoint[0].ends_with("/agent-gate"),
        "entrypoint is the binary: {entrypoint:?}"
    );
    assert_eq!(
        command[0], "serve",
        "the default command is `agent-gate serve`"
    );
}

#[test]
fn every_path_the_dockerfile_copies_exists_and_is_in_the_build_context() {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("Dockerfile")).expect("read Dockerfile");
    let ignore = DockerIgnore::load(&root.join(".dockerignore"));
    let mut checked = 0;
    for copy in parse_dockerfile(&text)
        .iter()
        .filter(|i| i.keyword == "COPY")
    {
        let words: Vec<&str> = copy.args.split_whitespace().collect();
        if words.iter().any(|w| w.starts_with("--from")) {
            continue; // copies from another stage, not from the build context
        }
        let sources: Vec<&str> = words
            .iter()
            .copied()
            .filter(|w| !w.starts_with("--"))
            .collect();
        for source in &sources[..sources.len() - 1] {
            let path = root.join(source);
            assert!(
                path.exists(),
                "COPY source {source} does not exist in the repository"
            );
            assert!(
                !ignore.is_excluded(source),
                "COPY {source} is excluded by .dockerignore"
            );
            for file in files_below(&root, source) {
                if !needed_for_build(&file) {
                    continue;
                }
                assert!(
                    !ignore.is_excluded(&file),
                    "COPY {source}: {file} is needed but excluded by .dockerignore"
                );
                checked += 1;
                for included in files_the_source_includes(&root, &file) {
                    assert!(
                        root.join(&included).is_file(),
                        "{file} includes {included}, which does not exist"
                    );
                    assert!(
                        !ignore.is_excluded(&included),
                        "{file} includes {included}, which .dockerignore excludes"
                    );
                }
            }
        }
    }
    assert!(
        checked > 10,
        "expected the workspace sources to be copied, checked {checked} files"
    );
}

#[test]
fn dockerignore_keeps_secrets_history_and_build_output_out() {
    let root = repo_root();
    let ignore = DockerIgnore::load(&root.join(".dockerignore"));
    for path in [
        "target/release/agent-gate",
        ".git/HEAD",
        ".env",
        "docs/guide.md",
        "gateway/tests/server.rs",
        "tests/tests/docker.rs",
        "agent-gate-manifest/tests/snapshots/x.snap",
        "data/agent-gate.db",
    ] {
        assert!(
            ignore.is_excluded(path),
            "{path} must be excluded from the build context"
        );
    }
    for path in [
        "Cargo.toml",
        "Cargo.lock",
        "gateway/src/main.rs",
        "tests/Cargo.toml",
        "tests/src/lib.rs",
        "tools.toml",
    ] {
        assert!(
            !ignore.is_excluded(path),
            "{path} must be in the build context"
        );
    }
}

#[test]
fn compose_mounts_config_read_only_and_data_read_write() {
    let root = repo_root();
    let text =
        std::fs::read_to_string(root.join("docker-compose.yml")).expect("read docker-compose.yml");
    let compose: Value = serde_yaml_ng::from_str(&text).expect("docker-compose.yml is YAML");
    let service = &compose["services"]["agent-gate"];
    assert!(service.is_mapping(), "service `agent-gate` is defined");

    let build = service["build"].as_str().expect("build context");
    assert!(
        root.join(build).join("Dockerfile").is_file(),
        "build context {build} has a Dockerfile"
    );
    assert_eq!(service["restart"].as_str(), Some("unless-stopped"));
    assert_eq!(service["env_file"].as_str(), Some(".env"));
    let ports: Vec<&str> = service["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        ports.iter().any(|p| p.ends_with(":8443")),
        "port 8443 is published: {ports:?}"
    );

    let volumes: Vec<&str> = service["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mount = |target: &str| -> &str {
        volumes
            .iter()
            .find(|v| v.split(':').nth(1) == Some(target))
            .unwrap_or_else(|| panic!("{target} is mounted: {volumes:?}"))
    };
    for read_only in [
        "/app/config.yaml",
        "/app/permissions.yaml",
        "/app/tools.toml",
        "/app/certs",
    ] {
        assert!(
            mount(read_only).ends_with(":ro"),
            "{read_only} is mounted read-only"
        );
    }
    assert!(
        !mount("/app/data").ends_with(":ro"),
        "/app/data is mounted read-write"
    );

    let limits = &service["deploy"]["resources"]["limits"];
    assert!(
        limits["memory"].is_string() && limits["cpus"].is_string(),
        "resource limits are set"
    );
    let logging = &service["logging"]["options"];
    assert!(
        logging["max-size"].is_string() && logging["max-file"].is_string(),
        "log rotation is set"
    );

    // The command the compose file runs is the image's serve command with the mounted files.
    let command: Vec<&str> = service["command"]
        .as_sequence()
        .expect("command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(command[0], "serve");
    assert!(command.contains(&"/app/config.yaml") && command.contains(&"/app/permissions.yaml"));
}
