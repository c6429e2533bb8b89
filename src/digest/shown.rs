//! How a field's value is shown in a report of differences: at most ~120
//! characters ([`shorten`]), and for a long text that changed, a window
//! around the first character where the two sides part ([`window`]); its
//! first 120 characters are often the same on both sides (a paragraph
//! edited in the middle), which says nothing.
//!
//! To find that place both texts are needed, but each side is read apart
//! from the other: so a long value keeps up to [`KEPT_CHARS`] characters
//! ([`Kept`]) while its side's budget ([`SIDE_BUDGET`] bytes, per side of a
//! key range being read) lasts, which keeps memory bounded whatever number
//! of rows differ. Past the kept prefix, or the budget, the report says
//! what it knows ("the first 1,024 characters are the same").

/// Characters shown of one value.
pub const SHOWN_CHARS: usize = 120;
/// Characters of a long value kept to find where two sides differ.
pub const KEPT_CHARS: usize = 1024;
/// Bytes of kept long values per side of a key range.
pub const SIDE_BUDGET: usize = 1 << 20;
/// Characters shown before the first difference.
const BEFORE: usize = 30;

/// At most [`SHOWN_CHARS`] characters, with the length said when cut.
pub fn shorten(s: &str) -> String {
    match s.char_indices().nth(SHOWN_CHARS) {
        Some((i, _)) => format!("{}… ({} chars)", &s[..i], s.chars().count()),
        None => s.to_string(),
    }
}

/// The first [`KEPT_CHARS`] characters of a value longer than it shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    pub prefix: Box<str>,
    /// The whole value's length in characters.
    pub chars: usize,
}

impl Kept {
    /// `Some` for a value longer than [`SHOWN_CHARS`] when `budget` (bytes
    /// left) allows; takes what it keeps from the budget.
    pub fn of(s: &str, budget: &mut usize) -> Option<Kept> {
        s.char_indices().nth(SHOWN_CHARS)?;
        let end = s.char_indices().nth(KEPT_CHARS).map_or(s.len(), |(i, _)| i);
        if end > *budget {
            return None;
        }
        *budget -= end;
        Some(Kept { prefix: s[..end].into(), chars: s.chars().count() })
    }

    fn complete(&self) -> bool {
        self.prefix.chars().count() == self.chars
    }
}

/// What a report knows of one side's value: its shortened text, and the
/// kept prefix when the value is long.
pub struct Seen<'a> {
    pub shown: &'a str,
    pub kept: Option<&'a Kept>,
}

/// The two values as the report shows them: when both are texts longer
/// than they show and the difference lies past the shown part, a window
/// around the first differing character on each side; otherwise as shown.
pub fn window(a: Seen<'_>, b: Seen<'_>) -> (String, String) {
    let (Some(ka), Some(kb)) = (a.kept, b.kept) else { return (a.shown.to_string(), b.shown.to_string()) };
    let (ca, cb): (Vec<char>, Vec<char>) = (ka.prefix.chars().collect(), kb.prefix.chars().collect());
    let same = ca.iter().zip(&cb).take_while(|(x, y)| x == y).count();
    if same < SHOWN_CHARS - BEFORE {
        // The shortened values already show where they part.
        return (a.shown.to_string(), b.shown.to_string());
    }
    let ends_a = same == ca.len() && !ka.complete();
    let ends_b = same == cb.len() && !kb.complete();
    if ends_a || ends_b {
        let note = format!("(the first {} characters are the same)", group(same));
        return (
            format!("{note} … ({} chars)", group(ka.chars)),
            format!("{note} … ({} chars)", group(kb.chars)),
        );
    }
    let side = |c: &[char], k: &Kept| {
        let from = same.saturating_sub(BEFORE);
        let to = (from + SHOWN_CHARS).min(c.len());
        let text: String = c[from..to].iter().collect();
        let more = if to < k.chars { "…" } else { "" };
        format!("…{text}{more} (differs from char {} of {})", group(same + 1), group(k.chars))
    };
    (side(&ca, ka), side(&cb, kb))
}

/// 20022 as `20,022` (the reports' one way to write counts).
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn group(n: usize) -> String {
    thousands(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seen<'a>(shown: &'a str, kept: &'a Option<Kept>) -> Seen<'a> {
        Seen { shown, kept: kept.as_ref() }
    }

    fn show(a: &str, b: &str) -> (String, String) {
        let mut budget = SIDE_BUDGET;
        let (ka, kb) = (Kept::of(a, &mut budget), Kept::of(b, &mut budget));
        let (sa, sb) = (shorten(a), shorten(b));
        window(seen(&sa, &ka), seen(&sb, &kb))
    }

    #[test]
    fn a_long_text_edited_in_the_middle_shows_the_edit_not_its_same_beginning() {
        let intro = "Cloudflare D1 is a managed serverless database with SQLite's SQL semantics. ".repeat(4);
        let a = format!("{intro}The index holds 1536 dimensions per vector. The end.");
        let b = format!("{intro}The index holds 768 dimensions per vector. The end.");
        let (sa, sb) = show(&a, &b);
        assert!(sa.contains("1536 dimensions") && sb.contains("768 dimensions"), "{sa}\n{sb}");
        let at = intro.chars().count() + "The index holds ".len() + 1;
        assert!(sa.contains(&format!("differs from char {at} of")), "{sa}");
        // The old display: the same 120 characters on both sides.
        assert_eq!(shorten(&a)[..100], shorten(&b)[..100]);
    }

    #[test]
    fn short_values_and_early_differences_show_as_before() {
        assert_eq!(show("abc", "abd"), ("abc".into(), "abd".into()));
        let (a, b) = ("x".repeat(300), format!("y{}", "x".repeat(299)));
        assert_eq!(show(&a, &b), (shorten(&a), shorten(&b)));
    }

    #[test]
    fn a_difference_past_the_kept_prefix_says_how_much_is_the_same() {
        let a = format!("{}A", "z".repeat(5000));
        let b = format!("{}B", "z".repeat(5000));
        let (sa, sb) = show(&a, &b);
        assert_eq!(sa, "(the first 1,024 characters are the same) … (5,001 chars)");
        assert_eq!(sb, sa);
    }

    #[test]
    fn the_budget_bounds_what_is_kept() {
        let long = "é".repeat(2000);
        let mut budget = 3000;
        let k = Kept::of(&long, &mut budget).expect("fits");
        assert_eq!((k.prefix.chars().count(), k.chars, budget), (KEPT_CHARS, 2000, 3000 - 2 * KEPT_CHARS));
        assert_eq!(Kept::of(&long, &mut budget), None, "over the budget: nothing kept");
        assert_eq!(Kept::of("short", &mut budget), None, "short values need nothing");
    }

    proptest! {
        /// Wherever an edit lands in a long text, the window shows each
        /// side's text from a little before the first differing character
        /// (or says the kept prefixes are the same), never a panic on
        /// multi-byte characters.
        #[test]
        fn the_window_starts_near_the_first_difference(
            base in "[a-zé ]{130,1500}",
            at in 0usize..1500,
            edit in "[A-Z€]{1,5}",
        ) {
            let chars: Vec<char> = base.chars().collect();
            let at = at.min(chars.len());
            let b: String = chars[..at].iter().chain(edit.chars().collect::<Vec<_>>().iter()).chain(chars[at..].iter()).collect();
            let (sa, sb) = show(&base, &b);
            if (SHOWN_CHARS - BEFORE..KEPT_CHARS).contains(&at) {
                let marker = format!("differs from char {} of", group(at + 1));
                prop_assert!(sb.contains(&marker), "{}", sb);
                let first_edit = edit.chars().next().map(String::from).unwrap_or_default();
                prop_assert!(sb.contains(&first_edit), "{}", sb);
                prop_assert!(sa.contains(&marker), "{}", sa);
            }
            prop_assert!(sa.chars().count() <= SHOWN_CHARS + 60 && sb.chars().count() <= SHOWN_CHARS + 60);
        }
    }
}
