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
