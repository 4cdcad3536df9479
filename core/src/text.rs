//! Character rules for text that arrives from the network.
//!
//! Two families of characters are refused at different layers:
//!
//! - control characters (Unicode `Cc`: C0, DEL, C1) are refused by the request
//!   extractors in every path and query value, and in every JSON body except as `\t`,
//!   `\n` and `\r` ([`refused_in_json`], [`find_json_control`]);
//! - invisible formatting characters (Unicode `Cf`, such as bidirectional overrides,
//!   zero-width spaces and the byte-order mark, plus the line and paragraph separators)
//!   are refused in names people read ([`is_invisible`]).

/// A control character a JSON body may not carry, raw or escaped: every `Cc` character
/// except tab, line feed and carriage return.
pub fn refused_in_json(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// Where [`find_json_control`] found a refused control character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlAt {
    /// Byte offset of the character (or of the escape that spells it).
    pub offset: usize,
    /// The character.
    pub character: char,
}

/// The first refused control character in JSON text, raw or written as an escape
/// (`\u0000`, `\b`, `\f`, …); `None` when there is none.
///
/// One pass over the bytes, without parsing: a backslash always starts an escape inside
/// a string and cannot appear outside one in valid JSON. Bytes that are not valid UTF-8
/// are left to the UTF-8 check.
pub fn find_json_control(json: &[u8]) -> Option<ControlAt> {
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        match b {
            b'\\' => {
                let &next = json.get(i + 1)?;
                match next {
                    b'u' => {
                        let code = json
                            .get(i + 2..i + 6)
                            .and_then(|h| std::str::from_utf8(h).ok())
                            .and_then(|h| u32::from_str_radix(h, 16).ok());
                        if let Some(c) = code.and_then(char::from_u32)
                            && refused_in_json(c)
                        {
                            return Some(ControlAt {
                                offset: i,
                                character: c,
                            });
                        }
                        i += 6;
                    }
                    b'b' | b'f' => {
                        let character = if next == b'b' { '\u{8}' } else { '\u{c}' };
                        return Some(ControlAt {
                            offset: i,
                            character,
                        });
                    }
                    _ => i += 2,
                }
            }
            0x00..=0x1f | 0x7f if refused_in_json(char::from(b)) => {
                return Some(ControlAt {
                    offset: i,
                    character: char::from(b),
                });
            }
            // C1 controls U+0080..U+009F are 0xC2 0x80..0x9F in UTF-8.
            0xc2 if json.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)) => {
                let character = char::from(json[i + 1]);
                return Some(ControlAt {
                    offset: i,
                    character,
                });
            }
            _ => i += 1,
        }
    }
    None
}

/// True for characters that change how text is displayed without being visible
/// themselves: Unicode format characters (`Cf`: bidirectional embeddings, overrides and
/// isolates, zero-width spaces and joiners, word joiners, the byte-order mark, soft
/// hyphen, interlinear annotation and tag characters, …) and the line and paragraph
/// separators U+2028 and U+2029.
pub fn is_invisible(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_controls_raw_and_escaped() {
        let found = |s: &str| find_json_control(s.as_bytes()).map(|c| c.character);
        assert_eq!(found(r#"{"a":"\u0000"}"#), Some('\0'));
        assert_eq!(found(r#"{"a":"x\u001F"}"#), Some('\u{1f}'));
        assert_eq!(found(r#"{"a":"\u007f"}"#), Some('\u{7f}'));
        assert_eq!(found(r#"{"a":"\u0085"}"#), Some('\u{85}'));
        assert_eq!(found(r#"{"a":"\b"}"#), Some('\u{8}'));
        assert_eq!(found(r#"{"a":"\f"}"#), Some('\u{c}'));
        assert_eq!(found("{\"a\":\"\u{7f}\"}"), Some('\u{7f}'));
        assert_eq!(found("{\"a\":\"\u{9c}\"}"), Some('\u{9c}'));
        assert_eq!(found("{\"a\":\"\0\"}"), Some('\0'));
        assert_eq!(
            find_json_control(br#"{"a":"\u0000"}"#).map(|c| c.offset),
            Some(6)
        );
        // Allowed: tab, newline, carriage return (escaped or as whitespace), an escaped
        // backslash followed by text that looks like an escape, and ordinary text.
        assert_eq!(found(r#"{"a":"l1\nl2\tx\r"}"#), None);
        assert_eq!(found("{\n\t\"a\": 1\r\n}"), None);
        assert_eq!(found(r#"{"a":"\\u0000 and \\b"}"#), None);
        assert_eq!(found(r#"{"a":"\u00e9 \u20ac \"q\" \/"}"#), None);
        assert_eq!(found("{\"a\":\"é € ÿ\"}"), None);
        // Truncated escapes are left to the JSON parser.
        assert_eq!(found(r#"{"a":"\u00"#), None);
        assert_eq!(found("\\"), None);
    }

    #[test]
    fn refused_in_json_keeps_whitespace_controls() {
        for c in ['\t', '\n', '\r', ' ', 'a', '\u{a0}'] {
            assert!(!refused_in_json(c), "{c:?}");
        }
        for c in ['\0', '\u{1}', '\u{1b}', '\u{7f}', '\u{80}', '\u{9f}'] {
            assert!(refused_in_json(c), "{c:?}");
        }
    }

    #[test]
    fn invisible_characters() {
        for c in [
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{200F}',
            '\u{FEFF}',
            '\u{2028}',
            '\u{2029}',
            '\u{00AD}',
            '\u{2060}',
            '\u{061C}',
            '\u{E0041}',
        ] {
            assert!(is_invisible(c), "U+{:04X}", u32::from(c));
        }
        for c in [
            'a', 'é', ' ', '\u{a0}', '€', '日', '😀', '\u{2030}', '\u{2070}',
        ] {
            assert!(!is_invisible(c), "U+{:04X}", u32::from(c));
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Any bytes: an answer, never a panic.
            #[test]
            fn scanning_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
                if let Some(at) = find_json_control(&bytes) {
                    prop_assert!(at.offset < bytes.len());
                    prop_assert!(refused_in_json(at.character));
                }
            }

            /// On any JSON a serializer writes, the scan finds a control character
            /// exactly when a string holds one.
            #[test]
            fn scanning_agrees_with_the_strings(key in "\\PC{0,10}|.{0,10}", value in any::<String>()) {
                let json = serde_json::to_vec(&serde_json::json!({ key.clone(): [value.clone()] })).unwrap();
                let expected = key.chars().chain(value.chars()).any(refused_in_json);
                prop_assert_eq!(find_json_control(&json).is_some(), expected);
            }
        }
    }
}
