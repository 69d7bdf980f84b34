//! Unit tests of the auth guard's pieces: header parsing, the success cache and reloads.

use super::*;

#[test]
fn base64_decodes_with_and_without_padding() {
    assert_eq!(decode_base64(b"dTpw").as_deref(), Some(&b"u:p"[..]));
    assert_eq!(decode_base64(b"dTpwdw==").as_deref(), Some(&b"u:pw"[..]));
    assert_eq!(decode_base64(b"dTpwdw").as_deref(), Some(&b"u:pw"[..]));
    assert_eq!(decode_base64(b"dTpwd3c=").as_deref(), Some(&b"u:pww"[..]));
    assert_eq!(decode_base64(b"d"), None);
    assert_eq!(decode_base64(b"d!pw"), None);
    assert_eq!(decode_base64(b""), None);
}

/// Where the `base64` crate could differ from the hand-written decoder it replaced.
#[test]
fn base64_edge_cases_match_the_hand_written_decoder() {
    // Padding may be short (clients that drop it still get in) but not longer than needed:
    // the one deliberate difference, refused where the old decoder stripped any `=` / `==`.
    assert_eq!(decode_base64(b"dTpwdw=").as_deref(), Some(&b"u:pw"[..]));
    assert_eq!(decode_base64(b"dTpw="), None);
    assert_eq!(decode_base64(b"dTpwd3c=="), None);
    assert_eq!(decode_base64(b"dTpw===="), None);
    // Unused low bits of the last character are ignored, as before (and as Go does).
    assert_eq!(decode_base64(b"dTpwdx==").as_deref(), Some(&b"u:pw"[..]));
    // Padding or whitespace inside, and the URL-safe alphabet, are refused.
    assert_eq!(decode_base64(b"dT==dw=="), None);
    assert_eq!(decode_base64(b"dTpw dw=="), None);
    assert_eq!(decode_base64(b"dTpw\tdw=="), None);
    assert_eq!(decode_base64(b"dTp-dw=="), None);
    assert_eq!(decode_base64(b"dTp_dw=="), None);
    // The full alphabet, both ends of it.
    assert_eq!(
        decode_base64(b"+/+/").as_deref(),
        Some(&[0xfb, 0xff, 0xbf][..])
    );
    assert_eq!(decode_base64(b"AAAA").as_deref(), Some(&[0, 0, 0][..]));
}

#[test]
fn whitespace_around_the_credentials_is_ignored_but_not_inside() {
    let c = parse_basic(b"Basic \t dTpw \t").expect("outer whitespace trimmed");
    assert_eq!((c.user(), c.password()), (&b"u"[..], &b"p"[..]));
    assert!(parse_basic(b"Basic dT pw").is_none());
    assert!(
        parse_basic(b"Basic\tdTpw").is_none(),
        "scheme ends at a space"
    );
    assert!(parse_basic(b"Basic ").is_none());
}

#[test]
fn the_cache_key_depends_on_the_whole_credential_and_is_stable() {
    let auth = BasicAuth::new(&users(&[("u", "h")]));
    let key = |header: &[u8]| auth.inner.cache_key(&parse_basic(header).expect("valid"));
    let up = key(b"Basic dTpw");
    assert!(up.is_some());
    assert_eq!(up, key(b"Basic dTpw"), "same credentials, same key");
    assert_ne!(up, key(b"Basic dTpx"), "u:q");
    assert_ne!(up, key(b"Basic dTpwdw=="), "u:pw");
    let other = BasicAuth::new(&users(&[("u", "h")]));
    let other_key = other
        .inner
        .cache_key(&parse_basic(b"Basic dTpw").expect("valid"));
    assert_ne!(up, other_key, "each guard has its own random key");
}

#[test]
fn basic_header_parsing() {
    let c = parse_basic(b"bAsIc   dTpwOng=").expect("valid");
    assert_eq!((c.user(), c.password()), (&b"u"[..], &b"p:x"[..]));
    assert!(parse_basic(b"Bearer dTpw").is_none());
    assert!(parse_basic(b"Basic").is_none());
    assert!(parse_basic(b"Basic dXNlcg==").is_none(), "no colon");
}

fn users(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretString> {
    pairs
        .iter()
        .map(|(user, hash)| ((*user).to_owned(), SecretString::from(*hash)))
        .collect()
}

#[test]
fn a_success_verified_against_a_replaced_hash_is_not_cached() {
    let auth = BasicAuth::new(&users(&[("a", "old"), ("b", "same")]));
    let old = auth.inner.state().users.clone();
    auth.set_users(&users(&[("a", "new"), ("b", "same")]));
    auth.inner.remember(Some([1; 32]), &old, "a");
    assert!(!auth.inner.cached(Some(&[1; 32])), "a's hash changed");
    auth.inner.remember(Some([2; 32]), &old, "b");
    assert!(auth.inner.cached(Some(&[2; 32])), "b's hash did not");
    auth.set_users(&users(&[("a", "new")]));
    auth.inner.remember(Some([3; 32]), &old, "b");
    assert!(!auth.inner.cached(Some(&[3; 32])), "b was removed");
}

#[test]
fn a_reload_keeps_exactly_the_cached_successes_whose_hash_is_unchanged() {
    let auth = BasicAuth::new(&users(&[("a", "ha"), ("b", "hb"), ("c", "hc")]));
    let current = auth.inner.state().users.clone();
    for (key, user) in [(1, "a"), (2, "b"), (3, "c"), (4, "a")] {
        auth.inner.remember(Some([key; 32]), &current, user);
    }
    auth.set_users(&users(&[("a", "ha"), ("b", "hb2"), ("d", "hc")]));
    let kept: Vec<u8> = (1..=4)
        .filter(|&key| auth.inner.cached(Some(&[key; 32])))
        .collect();
    assert_eq!(kept, [1, 4], "a unchanged; b changed; c removed");
}

#[test]
fn the_cache_is_bounded() {
    let auth = BasicAuth::new(&users(&[("u", "h")]));
    let users = auth.inner.state().users.clone();
    for i in 0..=CACHE_CAPACITY {
        auth.inner.remember(Some([i as u8; 32]), &users, "u");
    }
    assert_eq!(auth.inner.state().cache.len(), CACHE_CAPACITY);
    assert!(
        !auth.inner.cached(Some(&[0; 32])),
        "the oldest is forgotten"
    );
    assert!(auth.inner.cached(Some(&[CACHE_CAPACITY as u8; 32])));
}

#[test]
fn names_compare_in_constant_time_and_correctly() {
    assert!(constant_time_eq(b"prometheus", b"prometheus"));
    assert!(!constant_time_eq(b"prometheus", b"prometheuz"));
    assert!(!constant_time_eq(b"prom", b"prometheus"));
    assert!(!constant_time_eq(b"", b"x"));
    assert!(constant_time_eq(b"", b""));
}
