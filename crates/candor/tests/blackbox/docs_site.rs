//! The troubleshooting site, in a real headless browser (Chromium) and over HTTP: the
//! index at `/errors/` and every code's page load without console errors on the public and
//! admin listeners, no link is broken, the search finds a code by a word of its title,
//! screenshots for review, one h1 per page, a labelled search box and readable contrast in
//! light and dark. `candor docs build` writes the same site as files.

use crate::browser::{Browser, Page, PageError};
use crate::harness::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::SocketAddr;

/// Where the screenshots go for review (not committed): the target directory's tmp.
fn screenshot_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("docs-site-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn no_errors(url: &str, errors: Vec<PageError>) {
    assert!(errors.is_empty(), "{url} reported errors: {errors:#?}");
}

/// The page's links (resolved), and the URLs of its stylesheets, scripts and icons.
fn links_of(b: &mut Browser, page: &Page) -> (Vec<String>, Vec<String>) {
    let v = b.eval(
        page,
        "({ links: Array.from(document.querySelectorAll('a[href]'), a => a.href), \
            assets: Array.from(document.querySelectorAll('link[href], script[src], img[src]'), e => e.href || e.src) })",
    );
    let list = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    (list("links"), list("assets"))
}

/// One h1, and every in-page fragment link names an element of the page.
fn check_structure(b: &mut Browser, page: &Page, url: &str) {
    let v = b.eval(
        page,
        "({ h1: document.querySelectorAll('h1').length, \
            lang: document.documentElement.lang, \
            viewport: !!document.querySelector('meta[name=viewport]'), \
            missing: Array.from(document.querySelectorAll('a[href^=\"#\"]'), a => a.getAttribute('href').slice(1)).filter(id => !document.getElementById(id)) })",
    );
    assert_eq!(v["h1"], 1, "{url}: exactly one h1");
    assert_eq!(v["lang"], "en", "{url}");
    assert_eq!(v["viewport"], true, "{url}: viewport meta");
    assert_eq!(
        v["missing"],
        json!([]),
        "{url}: fragment links without a target"
    );
}

/// The lowest contrast ratio of text against its background (the nearest ancestor with an
/// opaque background) over the body's text elements, WCAG 2 relative luminance.
const CONTRAST_JS: &str = r#"(() => {
  const rgb = s => { const m = s.match(/rgba?\(([^)]+)\)/); const p = m[1].split(/[ ,\/]+/).filter(x => x).map(Number); return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 }; };
  const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
  const bg = el => { for (let e = el; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor); if (c.a > 0) return c; } return { r: 255, g: 255, b: 255, a: 1 }; };
  const ratio = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
  let worst = { ratio: 100, what: "" };
  for (const el of document.querySelectorAll('body, p, li, td, th, dt, dd, a, code, h1, h2, h3, label, input, pre')) {
    if (!el.textContent.trim() && el.tagName !== 'INPUT') continue;
    const r = ratio(rgb(getComputedStyle(el).color), bg(el));
    if (r < worst.ratio) worst = { ratio: r, what: el.tagName + '.' + el.className + ': ' + el.textContent.trim().slice(0, 40) };
  }
  return { worst, body: getComputedStyle(document.body).backgroundColor, bodyRatio: ratio(rgb(getComputedStyle(document.body).color), bg(document.body)) };
})()"#;

fn check_contrast(b: &mut Browser, page: &Page, url: &str) -> Vec<String> {
    let mut backgrounds = Vec::new();
    for scheme in ["light", "dark"] {
        b.page_call(
            page,
            "Emulation.setEmulatedMedia",
            json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] }),
        );
        let v = b.eval(page, CONTRAST_JS);
        let body = v["bodyRatio"].as_f64().unwrap();
        let worst = v["worst"]["ratio"].as_f64().unwrap();
        assert!(
            body >= 4.5,
            "{url} ({scheme}): body text contrast {body:.2}"
        );
        assert!(
            worst >= 4.5,
            "{url} ({scheme}): {} at {worst:.2}",
            v["worst"]["what"]
        );
        backgrounds.push(v["body"].as_str().unwrap().to_owned());
    }
    b.page_call(
        page,
        "Emulation.setEmulatedMedia",
        json!({ "features": [] }),
    );
    assert_ne!(
        backgrounds[0], backgrounds[1],
        "{url}: the dark style applies"
    );
    backgrounds
}

/// Types `text` into the search box found by its label's text, and returns the codes the
/// results list.
fn search(b: &mut Browser, page: &Page, text: &str) -> Vec<String> {
    let found = b.eval(
        page,
        "(() => { const l = Array.from(document.querySelectorAll('label')).find(l => l.textContent.trim() === 'Search error codes'); \
           if (!l || !l.control) return false; l.control.value = ''; l.control.focus(); return document.activeElement === l.control; })()",
    );
    assert_eq!(found, true, "a search box labelled 'Search error codes'");
    b.page_call(page, "Input.insertText", json!({ "text": text }));
    let v = b.eval(
        page,
        "({ codes: Array.from(document.querySelectorAll('#search-results li a code'), c => c.textContent), \
            hrefs: Array.from(document.querySelectorAll('#search-results li a'), a => a.getAttribute('href')), \
            status: document.getElementById('search-status').textContent })",
    );
    let codes: Vec<String> = v["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert!(
        v["status"]
            .as_str()
            .unwrap()
            .contains(&codes.len().to_string()),
        "{v}"
    );
    codes
}

fn path_of(url: &str, origin: &str) -> String {
    url.strip_prefix(origin)
        .unwrap_or_else(|| panic!("{url} leaves {origin}: the site links only to itself"))
        .split('#')
        .next()
        .unwrap()
        .to_owned()
}

/// Every page on one listener: loads clean, one h1, links and assets answer 200.
fn visit_site(b: &mut Browser, page: &Page, addr: SocketAddr, start: &str) -> BTreeSet<String> {
    let origin = format!("http://{addr}");
    let mut pages: Vec<String> = vec![start.to_owned()];
    let mut seen: BTreeSet<String> = pages.iter().cloned().collect();
    let mut checked: BTreeSet<String> = BTreeSet::new();
    while let Some(path) = pages.pop() {
        let url = format!("{origin}{path}");
        no_errors(&url, b.navigate(page, &url));
        check_structure(b, page, &url);
        let (links, assets) = links_of(b, page);
        for link in links.iter().chain(&assets) {
            let target = path_of(link, &origin);
            if checked.insert(target.clone()) {
                let r = request(addr, "GET", &target, &[("Accept", "text/html")], b"");
                assert_eq!(r.status, 200, "{url} links to {target}: {}", r.text());
            }
        }
        for link in &links {
            let target = path_of(link, &origin);
            if target.starts_with("/errors/") && seen.insert(target.clone()) {
                pages.push(target);
            }
        }
    }
    seen
}

#[test]
fn docs_site_in_a_real_browser() {
    let gw = Gateway::start("");
    let admin = gw.admin.expect("admin listener");
    let catalog = candor_catalog::Catalog::builtin();
    let mut b = Browser::start();
    let page = b.new_page();

    // The checks below see what a broken page reports: a console error, an exception, a
    // resource that does not load.
    let probe = format!("http://{}/errors/no_such_code", gw.addr);
    let errors = b.navigate(&page, &probe);
    assert!(
        errors.iter().any(|e| e.kind == "log"),
        "a 404 is reported: {errors:?}"
    );
    let errors = b.navigate(
        &page,
        "data:text/html,<title>t</title><script>console.error('probe'); throw new Error('boom')</script>",
    );
    let kinds: BTreeSet<&str> = errors.iter().map(|e| e.kind).collect();
    assert!(
        kinds.contains("console") && kinds.contains("exception"),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.text.contains("probe")),
        "{errors:?}"
    );

    // The public listener: from the index, every page and every link.
    let visited = visit_site(&mut b, &page, gw.addr, "/errors/");
    for e in catalog.entries() {
        assert!(
            visited.contains(&format!("/errors/{}", e.code)),
            "the index does not lead to {}",
            e.code
        );
    }
    // The admin listener serves the same site, and /catalog is its index for a browser.
    let admin_pages = visit_site(&mut b, &page, admin, "/catalog");
    assert_eq!(admin_pages.len(), visited.len() + 1, "{admin_pages:?}");

    // A type URL, followed in the browser, lands on its page.
    let problem = assert_problem(&gw.get("/no/such/path"), "route_not_found");
    let type_url = problem["type"].as_str().unwrap().to_owned();
    no_errors(&type_url, b.navigate(&page, &type_url));
    let h1 = b.eval(&page, "document.querySelector('h1').textContent");
    assert_eq!(h1, "route_not_found — No route matches this request");

    // The search finds a code by a word of its title.
    let index = format!("http://{}/errors/", gw.addr);
    no_errors(&index, b.navigate(&page, &index));
    let entry = catalog.get("rate_limited").unwrap();
    let word = entry.title.split(' ').nth(2).unwrap(); // "exceeded"
    let found = search(&mut b, &page, word);
    assert!(found.contains(&entry.code), "{word}: {found:?}");
    for code in &found {
        let e = catalog.get(code).unwrap();
        let text =
            format!("{} {} {}", e.code.replace('_', " "), e.title, e.explanation).to_lowercase();
        assert!(text.contains(word), "{code} does not mention {word}");
    }
    let found = search(&mut b, &page, "token expired");
    assert_eq!(
        found.first().map(String::as_str),
        Some("token_expired"),
        "{found:?}"
    );
    assert!(search(&mut b, &page, "xyzzy plugh").is_empty());
    no_errors(&index, b.drain_errors(&page));

    // Contrast in light and dark, on the index and on a page.
    check_contrast(&mut b, &page, &index);
    let rate_limited = format!("http://{}/errors/rate_limited", gw.addr);
    no_errors(&rate_limited, b.navigate(&page, &rate_limited));
    check_contrast(&mut b, &page, &rate_limited);

    // Screenshots for review: the index on a desktop, a page on a phone.
    let dir = screenshot_dir();
    no_errors(&index, b.navigate(&page, &index));
    b.page_call(
        &page,
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": false }),
    );
    let shot = b.screenshot(&page);
    assert!(shot.starts_with(b"\x89PNG"));
    std::fs::write(dir.join("index.png"), shot).unwrap();
    b.page_call(
        &page,
        "Emulation.setEmulatedMedia",
        json!({ "features": [{ "name": "prefers-color-scheme", "value": "dark" }] }),
    );
    std::fs::write(dir.join("index-dark.png"), b.screenshot(&page)).unwrap();
    b.page_call(
        &page,
        "Emulation.setEmulatedMedia",
        json!({ "features": [] }),
    );
    b.page_call(
        &page,
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true }),
    );
    no_errors(&rate_limited, b.navigate(&page, &rate_limited));
    // Readable on a phone: nothing wider than the screen but the example's own scroll box.
    let wide = b.eval(
        &page,
        "document.documentElement.scrollWidth <= window.innerWidth",
    );
    assert_eq!(wide, true, "the page scrolls sideways on a phone");
    let shot = b.screenshot(&page);
    std::fs::write(dir.join("rate_limited-phone.png"), shot).unwrap();
    println!("screenshots for review: {}", dir.display());
}

/// The built site works from files too: no errors, every link is a file it wrote, search.
#[test]
fn docs_build_writes_a_browsable_site() {
    let dir = temp_dir("docs");
    let out = dir.join("site");
    let (code, stdout, stderr) = candor(&["docs", "build", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let catalog = candor_catalog::Catalog::builtin();
    assert!(
        stdout.contains(&format!("({} error codes)", catalog.entries().len())),
        "{stdout}"
    );
    for e in catalog.entries() {
        let html = std::fs::read_to_string(out.join(format!("{}.html", e.code))).unwrap();
        assert!(
            html.contains(
                &format!("\"type\": \"http://127.0.0.1:8080/errors/{}\"", e.code)
                    .replace('"', "&quot;")
            )
        );
    }
    let mut b = Browser::start();
    let page = b.new_page();
    let index = format!("file://{}/index.html", out.display());
    no_errors(&index, b.navigate(&page, &index));
    check_structure(&mut b, &page, &index);
    let found = search(&mut b, &page, "maintenance");
    assert!(
        found.contains(&"service_unavailable".to_owned()),
        "{found:?}"
    );
    let (links, assets) = links_of(&mut b, &page);
    for link in links.iter().chain(&assets) {
        let file = link
            .strip_prefix("file://")
            .unwrap_or_else(|| panic!("{link} is not a file of the site"))
            .split('#')
            .next()
            .unwrap();
        assert!(
            std::path::Path::new(file).is_file(),
            "{index} links to {file}"
        );
    }
    let one = format!("file://{}/token_expired.html", out.display());
    no_errors(&one, b.navigate(&page, &one));
    check_structure(&mut b, &page, &one);

    // A configuration's operator catalog and base URL go into the site.
    std::fs::write(
        dir.join("ops.toml"),
        "[[error]]\ncode = \"plan_expired\"\nstatus = 402\ntype = \"billing\"\ntitle = \"Plan expired\"\nmessage = \"The plan of {account} expired.\"\nexplanation = \"The account's plan ended.\"\nchecklist = [\"Renew the plan.\"]\nretry = \"never\"\nexample = { account = \"acme\" }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("c.toml"),
        "[server]\ncatalog = \"ops.toml\"\npublic_base_url = \"https://api.example.com/\"\n",
    )
    .unwrap();
    let out2 = dir.join("site2");
    let (code, _, stderr) = candor(&[
        "docs",
        "build",
        out2.to_str().unwrap(),
        "--config",
        dir.join("c.toml").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let page2 = std::fs::read_to_string(out2.join("plan_expired.html")).unwrap();
    assert!(page2.contains("The plan of acme expired."), "{page2}");
    assert!(page2.contains("https://api.example.com/errors/plan_expired"));
    let index2 = std::fs::read_to_string(out2.join("index.html")).unwrap();
    assert!(index2.contains("<a href=\"plan_expired.html\">"));

    // A page shows an example answer in each error profile the configuration uses.
    let pelion =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/pelion.toml");
    let out3 = dir.join("site3");
    let (code, _, stderr) = candor(&[
        "docs",
        "build",
        out3.to_str().unwrap(),
        "--config",
        pelion.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let page3 = std::fs::read_to_string(out3.join("token_expired.html")).unwrap();
    assert!(page3.contains("(profile <code>pelion</code>)"), "{page3}");
    assert!(
        page3.contains("&quot;object&quot;: &quot;error&quot;"),
        "{page3}"
    );
    assert!(!page3.contains("In the default profile"), "{page3}");
    // And the profile's own page, linked from the index, its codes linked to theirs.
    let index3 = std::fs::read_to_string(out3.join("index.html")).unwrap();
    assert!(
        index3.contains("<a href=\"profile-pelion.html\">Pelion Device Management API</a>"),
        "{index3}"
    );
    let profile3 = std::fs::read_to_string(out3.join("profile-pelion.html")).unwrap();
    assert!(
        profile3.contains("<h1>Pelion Device Management API: troubleshooting errors</h1>")
            && profile3.contains("<a href=\"token_expired.html\"><code>token_expired</code></a>")
            && profile3.contains("<link rel=\"stylesheet\" href=\"site.css\">"),
        "{profile3}"
    );

    let (code, _, stderr) = candor(&[
        "docs",
        "build",
        out2.to_str().unwrap(),
        "--base-url",
        "ftp://x",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("is not an http(s) URL"), "{stderr}");
}

/// Over HTTP: the cache and security headers, revalidation, JSON for programs, the
/// redirect to the index's folder, and unknown names through the catalog.
#[test]
fn docs_pages_headers_and_misses() {
    let gw = Gateway::start("");
    let html = [("Accept", "text/html")];
    let r = gw.request("GET", "/errors/token_expired", &html, b"");
    assert_eq!(r.status, 200);
    let csp = r.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(r.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(r.header("vary"), Some("Accept"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let etag = r.header("etag").unwrap().to_owned();
    let again = gw.request(
        "GET",
        "/errors/token_expired",
        &[("Accept", "text/html"), ("If-None-Match", &etag)],
        b"",
    );
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    // The page names the headers the answer carries, from the catalog.
    assert!(r.text().contains("<dt><code>WWW-Authenticate</code></dt>"));

    let r = gw.request("GET", "/errors", &html, b"");
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("errors/"));
    let r = gw.get("/errors/");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json().as_array().unwrap().len(),
        candor_catalog::codes::ALL.len()
    );
    let r = gw.get("/errors/method_not_allowed");
    let v: Value = r.json();
    assert_eq!(v["headers"], json!(["Allow"]));
    for (asset, ty) in [
        ("site.css", "text/css; charset=utf-8"),
        ("search.js", "text/javascript; charset=utf-8"),
        ("search-index.json", "application/json"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let r = gw.get(&format!("/errors/{asset}"));
        assert_eq!(r.status, 200, "{asset}");
        assert_eq!(r.header("content-type"), Some(ty), "{asset}");
    }
    let b = assert_problem(
        &gw.request("GET", "/errors/site.cs", &html, b""),
        "resource_not_found",
    );
    assert_eq!(
        b["detail"],
        "Error code site.cs does not exist in the catalog. /errors/ lists every code."
    );
    let admin = gw.admin.unwrap();
    let r = request(admin, "GET", "/catalog", &html, b"");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(r.text().contains("<a href=\"errors/route_not_found\">"));
    let r = request(admin, "GET", "/catalog", &[], b"");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_problem(
        &request(admin, "GET", "/errors/nope_nope", &html, b""),
        "resource_not_found",
    );
    // Both listeners read a page's path decoded: an escaped letter or a dot segment names
    // the same page.
    for path in ["/errors/rate%5Flimited", "/%65rrors/x/../rate_limited"] {
        for (name, addr) in [("main", gw.addr), ("admin", admin)] {
            let r = request(addr, "GET", path, &[], b"");
            assert_eq!(r.status, 200, "{name} {path}: {}", r.text());
            assert_eq!(r.json()["code"], "rate_limited", "{name} {path}");
        }
    }
    // And a page's path with a bad escape is the same error on both.
    for (name, addr) in [("main", gw.addr), ("admin", admin)] {
        let r = request(addr, "GET", "/errors/rate%zzlimited", &[], b"");
        assert_eq!(r.status, 400, "{name}: {}", r.text());
        assert_problem(&r, "invalid_url_encoding");
    }
}

/// A profile in use has its page in the served site (Markdown for programs); a profile not
/// in use is a catalog miss that names the ones in use.
#[test]
fn a_profile_in_use_has_its_page_in_the_served_site() {
    let up = Upstream::start(Behaviour::Echo);
    // Pelion on one route: the site itself answers in the default format.
    let gw = Gateway::start(&one_route("/v1/{*rest}", &up.url(), "profile = \"pelion\""));
    let html = [("Accept", "text/html")];
    let index = gw.request("GET", "/errors/", &html, b"");
    assert_eq!(index.status, 200);
    assert!(
        index
            .text()
            .contains("<a href=\"profile-pelion\">Pelion Device Management API</a>"),
        "{}",
        index.text()
    );
    let r = gw.request("GET", "/errors/profile-pelion", &html, b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let page = r.text();
    assert!(
        page.contains("<a href=\"token_expired\"><code>token_expired</code></a>")
            && page.contains("<a href=\"./\">All error codes</a>"),
        "{page}"
    );
    let md = gw.request("GET", "/errors/profile-pelion", &[], b"");
    assert_eq!(md.status, 200);
    assert_eq!(
        md.header("content-type"),
        Some("text/markdown; charset=utf-8")
    );
    assert!(
        md.text()
            .starts_with("# Pelion Device Management API: troubleshooting errors")
    );
    // Not in use here (ixon), or misspelt.
    for (name, hint) in [
        ("ixon", "The profiles in use: pelion."),
        ("pelian", "Did you mean /errors/profile-pelion?"),
    ] {
        let r = gw.request("GET", &format!("/errors/profile-{name}"), &[], b"");
        let body = assert_problem(&r, "resource_not_found");
        assert_eq!(r.status, 404);
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(&format!(
                "Error profile {name} does not exist among the profiles in use here."
            )) && detail.ends_with(hint),
            "{detail}"
        );
    }
}
