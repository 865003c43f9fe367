//! Configuration modes, black-box: a route configures a feature at a level (cluster, group,
//! machine) the request names; below the base level the feature must be overridden first
//! (`unsupported_for_mode`), by the configuration or the admin API (`/modes`, kept across
//! restarts).

use crate::harness::*;

const CONFIG: &str = r#"
[config_modes]
levels = ["cluster", "group", "machine"]
query = "mode"
header = "X-Config-Mode"
how_to_enable = "Override settings from the UI for {feature} to configure through APIs."

[[config_modes.overrides]]
feature = "url_lists"
modes = ["machine"]

[[routes]]
name = "sender_groups"
path = "/esa/api/v2.0/config/sender_groups"
methods = ["GET", "PUT"]
upstream = "builtin:demo"
feature = "sender_groups"

[[routes]]
name = "url_lists"
path = "/esa/api/v2.0/config/url_lists"
methods = ["GET", "PUT"]
upstream = "builtin:demo"
feature = "url_lists"
config_modes = ["cluster", "machine"]
"#;

#[test]
fn a_feature_takes_requests_below_the_base_level_once_overridden() {
    let gw = Gateway::start(CONFIG);
    let sg = "/esa/api/v2.0/config/sender_groups";

    // The base level needs no override; the built-in demo API answers.
    let r = gw.get(&format!("{sg}?mode=cluster"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"]["feature"], "sender_groups");
    // No mode named: the default (the first level).
    assert_eq!(gw.get(sg).status, 200);

    // Machine mode, not overridden: the seed's sentence, naming the feature and the remedy.
    let r = gw.get(&format!("{sg}?mode=machine"));
    let b = assert_problem(&r, "unsupported_for_mode");
    assert_eq!(r.status, 404);
    assert_eq!(
        b["detail"],
        "Unsupported operation for machine mode on sender_groups. Override settings from the UI for sender_groups to configure through APIs."
    );
    assert_eq!(b["feature"], "sender_groups");
    assert_eq!(b["mode"], "machine");
    assert_eq!(
        b["mode_from"],
        "the mode query parameter or the X-Config-Mode header"
    );
    // The header names the mode too.
    let r = gw.request("GET", sg, &[("X-Config-Mode", "group")], b"");
    assert_eq!(assert_problem(&r, "unsupported_for_mode")["mode"], "group");

    // An override declared in the configuration; a mode the route does not support.
    let ul = "/esa/api/v2.0/config/url_lists";
    assert_eq!(gw.get(&format!("{ul}?mode=machine")).status, 200);
    let b = assert_problem(&gw.get(&format!("{ul}?mode=group")), "unsupported_for_mode");
    assert_eq!(
        b["detail"],
        "Unsupported operation for group mode on url_lists. This operation on url_lists supports cluster, machine mode only."
    );

    // A mode that is no level at all is a parameter problem.
    let b = assert_problem(&gw.get(&format!("{sg}?mode=machin")), "validation_failed");
    assert_eq!(b["errors"][0]["name"], "mode");
    assert!(
        b["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("the modes are cluster, group, machine"),
        "{b}"
    );

    // The admin API overrides sender_groups for machine mode: the call goes through, and
    // the settings written there are the machine level's own.
    let r = admin_call(&gw, "PUT", "/modes/sender_groups/machine", None);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        admin_call(&gw, "PUT", "/modes/sender_groups/machine", None).status,
        200
    );
    let r = gw.request(
        "PUT",
        &format!("{sg}?mode=machine"),
        &[("Content-Type", "application/json")],
        br#"{"blocked": ["BLOCKLIST"]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"]["settings"]["blocked"][0], "BLOCKLIST");
    let modes = gw.admin_get("/modes");
    assert_eq!(
        modes["levels"],
        serde_json::json!(["cluster", "group", "machine"])
    );
    let overrides = modes["overrides"].as_array().unwrap();
    assert!(
        overrides.contains(
            &serde_json::json!({"feature": "sender_groups", "mode": "machine", "set_by": ["admin"]})
        ),
        "{modes}"
    );
    assert!(
        overrides.contains(
            &serde_json::json!({"feature": "url_lists", "mode": "machine", "set_by": ["config"]})
        ),
        "{modes}"
    );

    // What the admin API cannot change or does not know.
    let b = assert_problem(
        &admin_call(&gw, "DELETE", "/modes/url_lists/machine", None),
        "conflict",
    );
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("declared in the configuration"),
        "{b}"
    );
    let b = assert_problem(
        &admin_call(&gw, "PUT", "/modes/sender_group/cluster", None),
        "validation_failed",
    );
    assert_eq!(b["errors"].as_array().unwrap().len(), 2, "{b}");
    assert_problem(
        &admin_call(&gw, "DELETE", "/modes/sender_groups/group", None),
        "resource_not_found",
    );

    // The override is kept across a restart; removed, machine mode is refused again.
    let gw = gw.restart();
    assert_eq!(gw.get(&format!("{sg}?mode=machine")).status, 200);
    let r = admin_call(&gw, "DELETE", "/modes/sender_groups/machine", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_problem(
        &gw.get(&format!("{sg}?mode=machine")),
        "unsupported_for_mode",
    );
}

#[test]
fn check_refuses_bad_mode_settings() {
    check_reports(
        r#"
[config_modes]
levels = ["cluster", "machine"]
default = "machnie"

[[config_modes.overrides]]
feature = "sender_groups"
modes = ["group"]

[[routes]]
path = "/x"
upstream = "builtin:demo"
config_modes = ["cluster"]
"#,
        &[
            "config_modes.default",
            "`machnie` is not one of the levels",
            "`group` is not one of the levels",
            "is set but the route names no `feature`",
        ],
    );
}
