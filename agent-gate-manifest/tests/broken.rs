//! Broken manifests: every error is reported with file, line, column and a
//! fix. The messages are pinned in one snapshot (reviewed by eye: it is the
//! spec of what authors see).

use agent_gate_manifest::{Manifest, ManifestError, Severity};

const SERVICE: &str = "[services.ha]\ndescription = \"HA\"\n\n";

fn errors_of(source: &str) -> ManifestError {
    match Manifest::from_str(source, "tools.toml") {
        Ok(_) => panic!("accepted:\n{source}"),
        Err(e) => e,
    }
}

fn tool(body: &str) -> String {
    format!("{SERVICE}[tools.t]\nservice = \"ha\"\ndescription = \"T.\"\n{body}")
}

#[test]
fn broken_manifests() {
    let cases: Vec<(&str, String)> = vec![
        ("toml syntax error", format!("{SERVICE}[tools.t\nservice = \"ha\"\n")),
        (
            "unknown keys, with and without a close match",
            tool("descripton = \"x\"\nhttp = { method = \"GET\", path = \"/a\", wrapp = \"x\" }\nflavour = 1\n"),
        ),
        ("unknown top-level key", format!("tool = {{}}\n{SERVICE}")),
        (
            "annotation hints that are not booleans",
            tool("read_only = \"yes\"\nopen_world = 1\nhttp = { method = \"GET\", path = \"/a\" }\n"),
        ),
        ("unsupported version", format!("version = 2\n{SERVICE}")),
        (
            "unknown argument type",
            tool("http = { method = \"GET\", path = \"/a/{x}\" }\nargs.x = { type = \"str\" }\n"),
        ),
        (
            "invalid regex",
            tool("http = { method = \"GET\", path = \"/a/{x}\" }\nargs.x = { type = \"string\", pattern = \"^[a-z$\" }\n"),
        ),
        (
            "placeholders naming no argument",
            tool("signature = \"{entity}\"\nhttp = { method = \"GET\", path = \"/a/{entity}/{other}\" }\nargs.entity_id = { type = \"string\", pattern = \"^[a-z.]+$\" }\n"),
        ),
        (
            "required-only placeholder for an optional argument, optional segment for a required one",
            tool("http = { method = \"GET\", path = \"/a/{x}{/y}\" }\nargs.x = { type = \"string\", required = false }\nargs.y = { type = \"string\" }\n"),
        ),
        (
            "query, body and body_merge naming no argument",
            tool("http = { method = \"POST\", path = \"/a\", query = { q = \"qq\" }, body = [\"b\"], body_merge = \"m\" }\n"),
        ),
        (
            "body_merge of a non-object",
            tool("http = { method = \"POST\", path = \"/a\", body_merge = \"data\" }\nargs.data = { type = \"string\" }\n"),
        ),
        (
            "undeclared service and response type",
            "[services.homeassistant]\n[types.State]\ndescription = \"S\"\n[tools.t]\nservice = \"homeassistan\"\ndescription = \"T.\"\nresponse = \"[Stat]\"\nhttp = { method = \"GET\", path = \"/a\" }\n".to_owned(),
        ),
        (
            "invalid identifiers",
            format!("{SERVICE}[tools.GetState]\nservice = \"ha\"\ndescription = \"T.\"\nhttp = {{ method = \"GET\", path = \"/a\", query = {{ t = \"type\", u = \"my-arg\", v = \"2nd\" }} }}\nargs.type = {{ type = \"string\" }}\nargs.my-arg = {{ type = \"string\" }}\nargs.2nd = {{ type = \"string\" }}\n"),
        ),
        (
            "array without items, pattern on a non-string, misplaced keys",
            tool("http = { method = \"POST\", path = \"/a\", body = [\"a\", \"n\", \"o\"] }\nargs.a = { type = \"array\" }\nargs.n = { type = \"integer\", pattern = \"^1$\", enum = [\"1\"] }\nargs.o = { type = \"object\", items = \"string\" }\n"),
        ),
        (
            "flags and wrap_unless naming non-boolean arguments, wrap_unless without wrap",
            tool("http = { method = \"GET\", path = \"/a\", query = { q = \"q\" }, flags = { f = \"q\", g = \"nope\" }, wrap_unless = \"b\" }\nargs.q = { type = \"string\" }\nargs.b = { type = \"boolean\" }\n"),
        ),
        (
            "body_const colliding with an argument, on a GET; error_help naming no argument",
            tool("http = { method = \"GET\", path = \"/a/{x}\", body_const = { x = \"1\", t = \"{{ 1 }}\" }, error_help = \"failed on {y}\" }\nargs.x = { type = \"string\", pattern = \"^[a-z]+$\" }\n"),
        ),
        (
            "argument used nowhere",
            tool("http = { method = \"GET\", path = \"/a\" }\n\n[tools.t.args.forgotten]\ntype = \"string\"\n"),
        ),
        (
            "object, free text and glob enum values in a signature",
            tool("signature = \"{data}, {text}, {mode}\"\nhttp = { method = \"POST\", path = \"/a\", body = [\"data\", \"text\", \"mode\"] }\nargs.data = { type = \"object\" }\nargs.text = { type = \"string\" }\nargs.mode = { type = \"string\", enum = [\"on\", \"all*\"] }\n"),
        ),
        (
            "text without wrap, GET with a body, lowercase method, bad path",
            tool("http = { method = \"GET\", path = \"/a\", body = [\"x\"], decode = \"text\" }\nargs.x = { type = \"string\" }\n\n[tools.u]\nservice = \"ha\"\ndescription = \"U.\"\nhttp = { method = \"post\", path = \"api/x?y=1\" }\n"),
        ),
        (
            "missing required keys and wrong value types",
            format!("{SERVICE}[tools.t]\nrequired = \"yes\"\n\n[tools.u]\nservice = 1\ndescription = \"U.\"\nhttp = {{ method = \"GET\", path = \"/{{x}}\" }}\nargs.x = {{ type = \"string\", required = \"no\" }}\n"),
        ),
        (
            "unbalanced braces in templates",
            tool("signature = \"{x\"\nhttp = { method = \"GET\", path = \"/a/x}\" }\nargs.x = { type = \"string\", pattern = \"^a$\" }\n"),
        ),
        (
            "targets: a slot outside the signature, unknown arguments, a bad pattern",
            tool("signature = \"{a}\"\nhttp = { method = \"POST\", path = \"/a/{a}\", body = [\"b\"] }\nargs.a = { type = \"string\", pattern = \"^[a-z]+$\" }\nargs.b = { type = \"string\", required = false, pattern = \"^[a-z.]+$\" }\ntargets = { slot = \"b\", args = [\"b\", \"c\"], pattern = \"^[a-z\" }\n"),
        ),
        (
            "targets: no slot, an unknown key",
            tool("signature = \"{a}, {b}\"\nhttp = { method = \"POST\", path = \"/a/{a}\", body = [\"b\"] }\nargs.a = { type = \"string\", pattern = \"^[a-z]+$\" }\nargs.b = { type = \"string\", pattern = \"^[a-z.]+$\" }\ntargets = { args = [\"b\"], flavour = 1 }\n"),
        ),
        (
            "or_list: on a non-string, in a path, and in a signature without targets",
            tool("signature = \"{a}\"\nhttp = { method = \"POST\", path = \"/a/{p}\", body = [\"a\", \"n\"] }\nargs.a = { type = \"string\", pattern = \"^[a-z]+$\", or_list = true }\nargs.p = { type = \"string\", pattern = \"^[a-z]+$\", or_list = true }\nargs.n = { type = \"integer\", or_list = true }\n"),
        ),
    ];
    let mut out = String::new();
    for (title, source) in &cases {
        let err = errors_of(source);
        assert!(err.iter().all(|d| d.severity == Severity::Error));
        for d in &err {
            // spans and line/column agree
            let (line, col) = agent_gate_manifest::diagnostics::line_column(source, d.span.start);
            assert_eq!((d.line, d.column), (line, col), "{d}");
            assert!(d.help.is_some(), "every error says how to fix it: {d}");
        }
        out.push_str(&format!("=== {title}\n{err}\n\n"));
    }
    insta::assert_snapshot!(out);
}

#[test]
fn duplicate_tools_across_files() {
    let a = format!(
        "{SERVICE}[tools.t]\nservice = \"ha\"\ndescription = \"T.\"\nhttp = {{ method = \"GET\", path = \"/a\" }}\n"
    );
    let b = "[tools.t]\nservice = \"ha\"\ndescription = \"T again.\"\nhttp = { method = \"GET\", path = \"/b\" }\n";
    let err = Manifest::from_sources([("a.toml", a.as_str()), ("b.toml", b)]).unwrap_err();
    insta::assert_snapshot!(err.to_string(), @r"
    b.toml:1:8: error: tool `t` is already defined at a.toml:4:1
      help: tool names must be unique across all manifest files: rename or remove one of them
    ");
    // services and types declared in one file serve tools of another
    let loaded = Manifest::from_sources([("a.toml", SERVICE), ("b.toml", b)]).unwrap();
    assert_eq!(
        loaded.manifest.tool("t").unwrap().location.file.to_str(),
        Some("b.toml")
    );
}

#[test]
fn empty_manifest_is_a_warning() {
    let loaded = Manifest::from_str(SERVICE, "tools.toml").unwrap();
    assert_eq!(loaded.manifest.tools().count(), 0);
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(loaded.warnings[0].severity, Severity::Warning);
    insta::assert_snapshot!(loaded.warnings[0].to_string(), @r"
    tools.toml: warning: the tool manifest declares no tools: agents can call nothing
      help: add `[tools.<name>]` sections, or check that the right file is configured
    ");
}

#[test]
fn unreadable_file() {
    let dir = std::env::temp_dir().join("agent-gate-manifest-missing-dir-for-test");
    let path = dir.join("nope.toml");
    let err = Manifest::load(&[&path]).unwrap_err();
    assert_eq!(err.diagnostics.len(), 1);
    let d = &err.diagnostics[0];
    assert_eq!((d.line, d.column), (0, 0));
    assert!(
        d.message.starts_with("cannot read the tool manifest"),
        "{d}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("{}: error:", path.display()))
    );
}
