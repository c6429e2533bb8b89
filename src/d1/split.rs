//! Splits SQL text into single statements, the way D1 walks a request's
//! `sql` or an imported file. It follows SQLite's own `sqlite3_complete`
//! state machine, so `;` inside strings, quoted names, comments and
//! `CREATE TRIGGER ... BEGIN ...; END;` bodies does not end a statement.
//!
//! Text can be pushed in pieces (an imported file is read line by line so a
//! multi-gigabyte file is never held in memory); a piece must end on a line
//! boundary or be the whole text, because words are not carried across pieces.

/// Tokens of `sqlite3_complete` (the column of [`TRANSITIONS`]).
#[derive(Clone, Copy)]
enum Token {
    Semi = 0,
    Ws = 1,
    Other = 2,
    Explain = 3,
    Create = 4,
    Temp = 5,
    Trigger = 6,
    End = 7,
}

/// `sqlite3_complete`'s table. States: 0 invalid, 1 start, 2 normal,
/// 3 explain, 4 create, 5 trigger body, 6 semicolon in a trigger body, 7 end.
/// A statement is complete when a `;` leads to state 1.
const TRANSITIONS: [[u8; 8]; 8] = [
    [1, 0, 2, 3, 4, 2, 2, 2],
    [1, 1, 2, 3, 4, 2, 2, 2],
    [1, 2, 2, 2, 2, 2, 2, 2],
    [1, 3, 3, 2, 4, 2, 2, 2],
    [1, 4, 2, 2, 2, 4, 5, 2],
    [6, 5, 5, 5, 5, 5, 5, 5],
    [6, 6, 5, 5, 5, 5, 5, 7],
    [1, 7, 5, 5, 5, 5, 5, 5],
];

/// Where the lexer is, carried from one piece of text to the next.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Normal,
    LineComment,
    BlockComment,
    /// Inside a quoted string or name, closed by this byte.
    Quoted(u8),
}

pub struct Splitter {
    buf: String,
    state: u8,
    mode: Mode,
    /// The statement being collected has a token other than `;` and blanks.
    has_content: bool,
}

impl Default for Splitter {
    fn default() -> Self {
        Splitter { buf: String::new(), state: 1, mode: Mode::Normal, has_content: false }
    }
}

/// Splits a whole text at once.
pub fn split(sql: &str) -> Vec<String> {
    let mut s = Splitter::default();
    let mut out = Vec::new();
    s.push(sql, &mut out);
    out.extend(s.finish());
    out
}

impl Splitter {
    /// Feeds a piece of text; complete statements (with their `;`, trimmed)
    /// are appended to `out`. Empty statements (`;;`, comments) are dropped.
    pub fn push(&mut self, text: &str, out: &mut Vec<String>) {
        let b = text.as_bytes();
        let (mut i, mut start) = (0, 0);
        while i < b.len() {
            let c = b[i];
            let next = b.get(i + 1).copied();
            match self.mode {
                Mode::LineComment => {
                    if c == b'\n' {
                        self.mode = Mode::Normal;
                    }
                    i += 1;
                }
                Mode::BlockComment => {
                    if c == b'*' && next == Some(b'/') {
                        self.mode = Mode::Normal;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
                Mode::Quoted(q) => {
                    // A doubled quote is an escaped quote, except in [names].
                    if c == q && q != b']' && next == Some(q) {
                        i += 2;
                    } else {
                        if c == q {
                            self.mode = Mode::Normal;
                        }
                        i += 1;
                    }
                }
                Mode::Normal => match c {
                    b';' => {
                        self.step(Token::Semi);
                        i += 1;
                        if self.state == 1 {
                            self.buf.push_str(&text[start..i]);
                            start = i;
                            self.emit(out);
                        }
                    }
                    b'-' if next == Some(b'-') => {
                        self.mode = Mode::LineComment;
                        self.step(Token::Ws);
                        i += 2;
                    }
                    b'/' if next == Some(b'*') => {
                        self.mode = Mode::BlockComment;
                        self.step(Token::Ws);
                        i += 2;
                    }
                    b'\'' | b'"' | b'`' => {
                        self.mode = Mode::Quoted(c);
                        self.step(Token::Other);
                        i += 1;
                    }
                    b'[' => {
                        self.mode = Mode::Quoted(b']');
                        self.step(Token::Other);
                        i += 1;
                    }
                    c if c.is_ascii_whitespace() => {
                        self.step(Token::Ws);
                        i += 1;
                    }
                    c if is_word_byte(c) && !c.is_ascii_digit() => {
                        let end = (i..b.len()).find(|&j| !is_word_byte(b[j])).unwrap_or(b.len());
                        self.step(keyword(&text[i..end]));
                        i = end;
                    }
                    _ => {
                        self.step(Token::Other);
                        i += 1;
                    }
                },
            }
        }
        self.buf.push_str(&text[start..]);
    }

    /// The last statement when the text does not end with `;` (or ends
    /// inside a string or trigger body: SQLite then reports it incomplete).
    pub fn finish(&mut self) -> Option<String> {
        let s = self.buf.trim();
        let last = (self.has_content && !s.is_empty()).then(|| s.to_string());
        *self = Splitter::default();
        last
    }

    fn step(&mut self, token: Token) {
        if !matches!(token, Token::Semi | Token::Ws) {
            self.has_content = true;
        }
        self.state = TRANSITIONS[self.state as usize][token as usize];
    }

    fn emit(&mut self, out: &mut Vec<String>) {
        if self.has_content {
            out.push(self.buf.trim().to_string());
        }
        self.buf.clear();
        self.has_content = false;
    }
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

fn keyword(word: &str) -> Token {
    match word.to_ascii_lowercase().as_str() {
        "create" => Token::Create,
        "temp" | "temporary" => Token::Temp,
        "trigger" => Token::Trigger,
        "end" => Token::End,
        "explain" => Token::Explain,
        _ => Token::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_semicolons_outside_quotes_comments_and_triggers() {
        let sql = "CREATE TABLE t(a); INSERT INTO t VALUES('x;y'); -- c;\n/* ; */ ;\
                   CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; SELECT 2; END; SELECT \"a;\" FROM [b;]";
        let got = split(sql);
        // The comment-only statement between them is dropped.
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[1], "INSERT INTO t VALUES('x;y');");
        assert!(got[2].starts_with("CREATE TRIGGER") && got[2].ends_with("END;"));
        assert_eq!(got[3], "SELECT \"a;\" FROM [b;]");
    }

    #[test]
    fn pieces_carry_strings_across_lines() {
        let mut s = Splitter::default();
        let mut out = Vec::new();
        s.push("INSERT INTO t VALUES('a\n", &mut out);
        s.push("b;c');\n", &mut out);
        s.push("SELECT 'it''s';\n", &mut out);
        assert!(s.finish().is_none());
        assert_eq!(out, vec!["INSERT INTO t VALUES('a\nb;c');".to_string(), "SELECT 'it''s';".into()]);
    }
}
