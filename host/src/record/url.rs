//! Text put into a URL: one path segment, percent-encoded.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Every byte but RFC 3986's unreserved ones (letters, digits, `-._~`).
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `text` as one percent-encoded path segment (a job id, an operator uid, a
/// lookup key: any character may be in them).
pub(crate) fn segment(text: &str) -> String {
    utf8_percent_encode(text, NOT_UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_byte_but_the_unreserved_ones_is_percent_encoded() {
        assert_eq!(super::segment("count-v2_x.y~CAM0042"), "count-v2_x.y~CAM0042");
        assert_eq!(super::segment("a b/c%é"), "a%20b%2Fc%25%C3%A9");
    }
}
