//! Measures policy evaluation: one signature against 1,000 rules (budget: under 50 µs).
//!
//! Run with `cargo run --release -p agent-gate-gateway --example bench_policy`.
//! The rules are a realistic mix (literal signatures, prefix globs, `*` in the middle, `?` and
//! classes); the signatures are chosen so that every rule has to be tested (no early deny).

use std::hint::black_box;
use std::time::{Duration, Instant};

use agent_gate_gateway::config::PermissionsFile;
use agent_gate_gateway::policy::{Action, Policy};

fn rules_yaml(n: usize) -> String {
    let mut s = String::from(
        "defaults:\n  - {pattern: \"ha_get_*\", action: allow}\n  - {pattern: \"*\", action: ask}\nrules:\n",
    );
    for i in 0..n {
        let (pattern, action) = match i % 6 {
            0 => (
                format!("ha_call_service(light.turn_on, light.room_{i})"),
                "allow",
            ),
            1 => (format!("ha_call_service(lock.*, lock.door_{i})"), "deny"),
            2 => (format!("ha_get_state(sensor.temp_{i}*)"), "ask"),
            3 => (format!("*(*, switch.plug_{i})"), "deny"),
            4 => (
                format!("ha_call_service(climate.set_?emperature, climate.zone_{i})"),
                "allow",
            ),
            _ => (format!("ha_fire_event(custom_[a-m]*_{i})"), "deny"),
        };
        s.push_str(&format!(
            "  - {{pattern: \"{pattern}\", action: {action}}}\n"
        ));
    }
    s
}

fn measure(policy: &Policy, signature: &str, expected: Action) -> Duration {
    assert_eq!(policy.evaluate("default", signature), expected);
    // Warm up, then time enough iterations for a stable mean.
    for _ in 0..1_000 {
        black_box(policy.evaluate(black_box("default"), black_box(signature)));
    }
    let iterations = 20_000u32;
    let start = Instant::now();
    for _ in 0..iterations {
        black_box(policy.evaluate(black_box("default"), black_box(signature)));
    }
    start.elapsed() / iterations
}

fn main() {
    let env = |_: &str| None;
    let n = 1_000;
    let file = PermissionsFile::parse(&rules_yaml(n), "bench.yaml", &env)
        .unwrap_or_else(|e| panic!("{e}"));
    let policy = Policy::new(file);
    let tested = policy
        .explain("default", "ha_call_service(light.turn_on, light.hallway)")
        .patterns_tested;
    println!(
        "policy with {n} rules + 2 defaults ({tested} patterns tested per worst-case evaluation)"
    );
    let cases = [
        ("ha_call_service(light.turn_on, light.hallway)", Action::Ask),
        ("ha_get_state(sensor.kitchen_humidity)", Action::Allow),
        (
            "ha_call_service(light.turn_on, light.room_996)",
            Action::Allow,
        ),
        ("ha_fire_event(custom_alarm_995)", Action::Deny),
    ];
    let mut worst = Duration::ZERO;
    for (signature, expected) in cases {
        let t = measure(&policy, signature, expected);
        worst = worst.max(t);
        println!(
            "{:>9.2} µs  {expected:<5}  {signature}",
            t.as_secs_f64() * 1e6
        );
    }
    println!(
        "worst mean: {:.2} µs per evaluation (budget 50 µs): {}",
        worst.as_secs_f64() * 1e6,
        if worst < Duration::from_micros(50) {
            "within budget"
        } else {
            "OVER BUDGET"
        }
    );
}
