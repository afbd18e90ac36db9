//! A database URL as errors and health may show it: without its password, whether in the
//! user info (`postgres://user:secret@host/db`) or a `password=` parameter.

/// Splits a URL into what comes before its user info, the user info (if any), and the rest.
/// The user info ends at the last `@` before the query, so a password holding `/` is found.
fn split(url: &str) -> (&str, Option<&str>, &str) {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return (url, None, "");
    };
    let (prefix, after) = url.split_at(scheme_end);
    let before_query = after.find(['?', '#']).map_or(after, |q| &after[..q]);
    match before_query.rfind('@') {
        Some(at) => (prefix, Some(&after[..at]), &after[at..]),
        None => (prefix, None, after),
    }
}

fn is_password_param(pair: &str) -> bool {
    pair.split('=')
        .next()
        .is_some_and(|k| k.eq_ignore_ascii_case("password"))
}

/// The URL without its password.
pub(super) fn redact(url: &str) -> String {
    let (prefix, user_info, rest) = split(url);
    let mut out = String::with_capacity(url.len());
    out.push_str(prefix);
    if let Some(info) = user_info {
        out.push_str(info.split_once(':').map_or(info, |(user, _)| user));
    }
    match rest.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            out.push_str(path);
            let kept: Vec<&str> = query.split('&').filter(|p| !is_password_param(p)).collect();
            if !kept.is_empty() && kept.iter().any(|p| !p.is_empty()) {
                out.push('?');
                out.push_str(&kept.join("&"));
            }
            if let Some(f) = fragment {
                out.push('#');
                out.push_str(f);
            }
        }
        None => out.push_str(rest),
    }
    out
}

/// The passwords a URL holds.
fn secrets(url: &str) -> Vec<String> {
    let (_, user_info, rest) = split(url);
    let mut out: Vec<String> = user_info
        .and_then(|info| info.split_once(':'))
        .map(|(_, password)| password.to_owned())
        .into_iter()
        .collect();
    if let Some((_, query)) = rest.split_once('?') {
        out.extend(
            query
                .split(['&', '#'])
                .filter(|p| is_password_param(p))
                .filter_map(|p| p.split_once('=').map(|(_, v)| v.to_owned())),
        );
    }
    let decoded: Vec<String> = out.iter().map(|s| percent_decode(s)).collect();
    out.extend(decoded);
    out.retain(|s| !s.is_empty());
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A message with any password of `url` in it blotted out.
pub(super) fn scrub(message: &str, url: &str) -> String {
    let mut out = message.to_owned();
    for secret in secrets(url) {
        out = out.replace(&secret, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_left_out() {
        assert_eq!(
            redact("postgres://ada:s3cret@db.example:5432/aimesh?sslmode=require"),
            "postgres://ada@db.example:5432/aimesh?sslmode=require"
        );
        assert_eq!(redact("postgres://ada:p/w@h:1/db"), "postgres://ada@h:1/db");
        assert_eq!(
            redact("postgres://h/db?user=ada&password=s3cret&sslmode=disable"),
            "postgres://h/db?user=ada&sslmode=disable"
        );
        assert_eq!(redact("postgres://h/db?Password=x"), "postgres://h/db");
        assert_eq!(redact("postgres://ada@h/db"), "postgres://ada@h/db");
        assert_eq!(redact("postgresql://h"), "postgresql://h");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn messages_lose_the_password() {
        let url = "postgres://ada:s%40cret@h/db?password=other";
        assert_eq!(
            scrub("bad s%40cret, s@cret and other", url),
            "bad ***, *** and ***"
        );
    }
}
