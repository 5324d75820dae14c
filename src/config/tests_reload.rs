//! `[reload]`, `[admin] reload_token`, and what a load records for the watcher and the hash.

use std::time::Duration;

use super::tests::{BASE, errors, ok, parse_in};

#[test]
fn reload_defaults_watch_every_five_seconds() {
    let c = ok(BASE);
    assert!(c.reload.watch);
    assert_eq!(c.reload.watch_interval, Duration::from_secs(5));
}

#[test]
fn watch_interval_must_apply_a_change_within_a_minute() {
    for bad in ["50ms", "31s", "0s"] {
        let errs = errors(&format!("{BASE}\n[reload]\nwatch_interval = \"{bad}\"\n"));
        assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
        assert!(errs[0].contains("reload.watch_interval"), "{errs:?}");
    }
    let c = ok(&format!(
        "{BASE}\n[reload]\nwatch = false\nwatch_interval = \"200ms\"\n"
    ));
    assert!(!c.reload.watch);
    assert_eq!(c.reload.watch_interval, Duration::from_millis(200));
}

#[test]
fn a_reload_token_is_a_secret_file_of_token_characters_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let admin = |file: &str| {
        format!("{BASE}\n[admin]\naddr = \"127.0.0.1:9\"\nreload_token = {{ file = \"{file}\" }}\n")
    };
    std::fs::write(
        dir.path().join("good"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let c = parse_in(&admin("good"), dir.path()).unwrap();
    let token = c.admin.unwrap().reload_token.unwrap();
    assert_eq!(token.expose(), b"0123456789abcdef0123456789abcdef");

    std::fs::write(dir.path().join("short"), "tooshort").unwrap();
    std::fs::write(dir.path().join("spaces"), "has spaces in it, quite long").unwrap();
    for (file, expected) in [("short", "at least 16 bytes"), ("spaces", "may only hold")] {
        let err = parse_in(&admin(file), dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("admin.reload_token") && err.contains(expected),
            "{err}"
        );
        assert!(
            !err.contains("tooshort") && !err.contains("has spaces"),
            "echoed: {err}"
        );
    }
    let inline = errors(&format!(
        "{BASE}\n[admin]\naddr = \"127.0.0.1:9\"\nreload_token = \"0123456789abcdef\"\n"
    ));
    assert!(inline[0].contains("never written inline"), "{inline:?}");
}

#[test]
fn a_load_records_every_file_it_read_and_hashes_only_non_secret_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "0123456789abcdef0123456789abcdef").unwrap();
    let src =
        format!("{BASE}\n[admin]\naddr = \"127.0.0.1:9\"\nreload_token = {{ file = \"token\" }}\n");
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, &src).unwrap();
    let (loaded, sources) = super::load_with_sources(&config);
    loaded.unwrap();
    let watched: Vec<_> = sources.watched().collect();
    assert_eq!(watched.len(), 2, "{watched:?}");
    assert_eq!(watched[0], (config.as_path(), false));
    assert_eq!(watched[1], (dir.path().join("token").as_path(), true));
    let before = sources.hash.clone();
    std::fs::write(dir.path().join("token"), "fedcba9876543210fedcba9876543210").unwrap();
    assert_eq!(
        super::load_with_sources(&config).1.hash,
        before,
        "secrets are not hashed"
    );
    std::fs::write(&config, format!("{src}\n# edited\n")).unwrap();
    assert_ne!(super::load_with_sources(&config).1.hash, before);

    // A refused load still says which files it tried, so the watcher sees them appear.
    std::fs::remove_file(dir.path().join("token")).unwrap();
    let (refused, tried) = super::load_with_sources(&config);
    assert!(refused.is_err());
    assert!(tried.files.iter().any(|f| f.path.ends_with("token")));
}
