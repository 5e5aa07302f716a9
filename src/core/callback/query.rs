//! Parsing the authorization response carried in the redirect's query (RFC 6749 §4.1.2).

use std::fmt;

/// Longest value we accept for any parameter; real codes and states are far shorter, and the
/// request head is capped at 8 KiB anyway.
pub const MAX_VALUE_LEN: usize = 4096;

/// What a redirect carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackParams {
    /// `code` with `state` (and `iss` per RFC 9207 when the provider sends it).
    Code {
        state: String,
        code: String,
        iss: Option<String>,
    },
    /// `error` with `state` (RFC 6749 §4.1.2.1).
    Error {
        state: String,
        error: String,
        description: Option<String>,
        uri: Option<String>,
        iss: Option<String>,
    },
}

impl CallbackParams {
    pub fn state(&self) -> &str {
        match self {
            Self::Code { state, .. } | Self::Error { state, .. } => state,
        }
    }

    pub fn iss(&self) -> Option<&str> {
        match self {
            Self::Code { iss, .. } | Self::Error { iss, .. } => iss.as_deref(),
        }
    }
}

/// Why a query is not an authorization response. None of these touch a pending flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryError {
    /// No `state` (a favicon fetch, a scanner, a hand-typed URL).
    MissingState,
    /// A parameter appears twice (RFC 6749 §3.1 forbids it; it smells of injection).
    Duplicate(&'static str),
    /// Neither `code` nor `error`.
    MissingCode,
    /// Both `code` and `error`.
    CodeAndError,
    /// A parameter is empty or longer than [`MAX_VALUE_LEN`].
    BadValue(&'static str),
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingState => f.write_str("the redirect carries no state"),
            Self::Duplicate(p) => write!(f, "the redirect carries {p} more than once"),
            Self::MissingCode => f.write_str("the redirect carries neither code nor error"),
            Self::CodeAndError => f.write_str("the redirect carries both code and error"),
            Self::BadValue(p) => write!(f, "the redirect's {p} is empty or too long"),
        }
    }
}

const KNOWN: [&str; 6] = [
    "state",
    "code",
    "error",
    "error_description",
    "error_uri",
    "iss",
];

/// Parse a raw query string (without the leading `?`). Unknown parameters are ignored.
pub fn parse_callback_query(query: &str) -> Result<CallbackParams, QueryError> {
    let mut found: [Option<String>; 6] = Default::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let Some(i) = KNOWN.iter().position(|k| *k == key) else {
            continue;
        };
        if found[i].is_some() {
            return Err(QueryError::Duplicate(KNOWN[i]));
        }
        if value.is_empty() || value.len() > MAX_VALUE_LEN {
            return Err(QueryError::BadValue(KNOWN[i]));
        }
        found[i] = Some(value.into_owned());
    }
    let [state, code, error, description, uri, iss] = found;
    let state = state.ok_or(QueryError::MissingState)?;
    match (code, error) {
        (Some(code), None) => Ok(CallbackParams::Code { state, code, iss }),
        (None, Some(error)) => Ok(CallbackParams::Error {
            state,
            error,
            description,
            uri,
            iss,
        }),
        (Some(_), Some(_)) => Err(QueryError::CodeAndError),
        (None, None) => Err(QueryError::MissingCode),
    }
}

/// The query part of what a user pasted: a whole redirect URL
/// (`http://127.0.0.1:PORT/?code=..&state=..`), `?code=..`, or a bare `code=..&state=..`.
/// Surrounding whitespace and quotes and any `#fragment` are dropped.
pub fn query_of_pasted_url(pasted: &str) -> &str {
    let s = pasted
        .trim()
        .trim_matches(|c| c == '"' || c == '\'' || c == '<' || c == '>');
    let s = s.split_once('#').map_or(s, |(before, _)| before);
    match s.split_once('?') {
        Some((_, q)) => q,
        None if s.contains('=') => s,
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_and_state() {
        let p = parse_callback_query("code=abc&state=xyz&iss=https%3A%2F%2Fidp").unwrap();
        assert_eq!(
            p,
            CallbackParams::Code {
                state: "xyz".into(),
                code: "abc".into(),
                iss: Some("https://idp".into())
            }
        );
    }

    #[test]
    fn error_response() {
        let p =
            parse_callback_query("error=access_denied&error_description=The+user+said+no&state=s")
                .unwrap();
        assert!(
            matches!(p, CallbackParams::Error { ref error, ref description, .. }
            if error == "access_denied" && description.as_deref() == Some("The user said no"))
        );
    }

    #[test]
    fn rejections() {
        assert_eq!(parse_callback_query(""), Err(QueryError::MissingState));
        assert_eq!(
            parse_callback_query("code=a"),
            Err(QueryError::MissingState)
        );
        assert_eq!(
            parse_callback_query("state=s"),
            Err(QueryError::MissingCode)
        );
        assert_eq!(
            parse_callback_query("state=s&state=t&code=c"),
            Err(QueryError::Duplicate("state"))
        );
        assert_eq!(
            parse_callback_query("state=s&code=c&error=e"),
            Err(QueryError::CodeAndError)
        );
        assert_eq!(
            parse_callback_query("state=&code=c"),
            Err(QueryError::BadValue("state"))
        );
    }

    #[test]
    fn pasted_forms() {
        assert_eq!(
            query_of_pasted_url(" http://127.0.0.1:5/?code=a&state=b#x \n"),
            "code=a&state=b"
        );
        assert_eq!(query_of_pasted_url("?code=a&state=b"), "code=a&state=b");
        assert_eq!(query_of_pasted_url("code=a&state=b"), "code=a&state=b");
        assert_eq!(
            query_of_pasted_url("'http://127.0.0.1:5/?code=a&state=b'"),
            "code=a&state=b"
        );
        assert_eq!(query_of_pasted_url("hello"), "");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(q in "\\PC{0,300}") {
            let _ = parse_callback_query(&q);
            let _ = query_of_pasted_url(&q);
        }

        #[test]
        fn round_trips(state in "[A-Za-z0-9_-]{1,64}", code in "\\PC{1,64}") {
            let q: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("code", &code).append_pair("state", &state).finish();
            let p = parse_callback_query(&q).unwrap();
            proptest::prop_assert_eq!(p, CallbackParams::Code { state, code, iss: None });
        }
    }
}
