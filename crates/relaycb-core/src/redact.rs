//! Secrets kept out of what relaycb shows: a database URL names its password
//! in its user info or as a `password` query parameter, and both the server
//! and the command line print such URLs in logs and messages.

/// `url` with its password, wherever it stands, replaced by `***`; other
/// query parameters are kept. Text that is not a URL comes back unchanged.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn a_password_is_hidden_in_the_user_info_and_in_the_query() {
        assert_eq!(
            redact_url("postgres://relay:hunter2@db:5432/relaycb?sslmode=disable&Password=hunter2"),
            "postgres://relay:***@db:5432/relaycb?sslmode=disable&Password=***"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("postgres://a:b:c@h"), "postgres://a:***@h");
        assert_eq!(redact_url("./relaycb.db"), "./relaycb.db");
    }
}
