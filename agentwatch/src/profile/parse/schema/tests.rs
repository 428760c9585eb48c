use super::*;

const BROKEN: &str = "apiVersion: agentwatch.dev/v1
kind: Profile
agent: x
files:
  - path: \"/usr/**\"
    access: [read, exex]
    color: blue
network:
  - direction: connect
    address: \"127.0.0.1\"
    port: 99999
  - direction: sideways
    address: \"10.0.0.1\"
actions:
  file: enforcing
  disk: alert
rates:
  headroom: -1
  perMinute:
    file: {peak: 3, budget: lots}
ioUring: maybe
";

#[test]
fn every_problem_is_found_in_one_pass_in_the_profiles_words() {
    let found = check(BROKEN);
    let msgs: Vec<(u64, &str)> = found.iter().map(|f| (f.line, f.message.as_str())).collect();
    assert_eq!(
        msgs,
        vec![
            (6, "`exex` is not an access"),
            (7, "unknown field `color` in a file rule"),
            (11, "port 99999 is out of range 0-65535"),
            (12, "`sideways` is not a direction"),
            (15, "`enforcing` is not an action"),
            (16, "`disk` is not a class of actions"),
            (18, "`headroom` is a number above 0, not -1"),
            (20, "`budget` is a whole number 0 or more, not `lots`"),
            (21, "`ioUring` is true or false, not `maybe`"),
        ],
        "{found:#?}"
    );
    assert!(
        found[0].fix.contains("read, write, create"),
        "{}",
        found[0].fix
    );
    assert!(found.iter().all(|f| f.severity == Severity::Error));
}

/// A sample of what `want` accepts, as JSON (which YAML reads).
fn sample(want: &Want) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let fields = |fs: &[Field]| -> Value {
        Value::Object(
            fs.iter()
                .map(|Field(n, w)| (n.to_string(), sample(w)))
                .collect(),
        )
    };
    match want {
        Want::Text => json!("/x"),
        Want::Bool => json!(true),
        Want::Count => json!(1),
        Want::Positive => json!(2.0),
        Want::Port => json!(443),
        Want::OneOf(words, _) => json!(words[0]),
        Want::ListOf(w) => json!([sample(w)]),
        Want::Fields(fs, _) => fields(fs),
        Want::ListOfFields(fs, _) => json!([fields(fs)]),
        Want::KeyedBy(keys, _, w) => Value::Object(
            keys.iter()
                .map(|k| (k.to_string(), sample(w)))
                .collect::<Map<_, _>>(),
        ),
    }
}

/// The table and the typed parse's file form agree on names and
/// shapes: a document with every field the table knows, each of its
/// kind, is one the typed form reads (it refuses unknown fields).
/// The other way round, a written profile passing the check, is
/// `every_section_written_passes_the_shape_check` in `super::tests`.
#[test]
fn every_field_in_the_table_is_one_the_typed_parse_reads() {
    let doc = sample(&Want::Fields(PROFILE, "a profile")).to_string();
    if let Err(e) = serde_saphyr::from_str::<super::super::Doc>(&doc) {
        panic!("the table and the file form differ: {e}\n{doc}");
    }
    assert!(check(&doc).is_empty(), "{:#?}", check(&doc));
}

#[test]
fn a_good_profile_and_broken_yaml_give_nothing() {
    let good = "apiVersion: agentwatch.dev/v1\nkind: Profile\nagent: x\nfiles:\n  - path: \"/usr/**\"\n    access: [read]\nnetwork:\n  - direction: connect\n    port: 443\n    host: example.com\n";
    assert!(check(good).is_empty(), "{:#?}", check(good));
    assert!(check("agent: [unclosed\n").is_empty());
}
