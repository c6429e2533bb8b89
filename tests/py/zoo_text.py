"""Deterministic building blocks for the schema zoo's data (zoo_data.py):
prose in several scripts, Markdown sections, long chunks, vectors as
pgvector text literals, ids and timestamps. Everything comes from a
`random.Random` the caller seeds, so the same seed gives the same rows.

Vectors are written as text ('[0.0123457,...]') and cast by Postgres's
vector input: the tests never call pgvector functions or operators (the
CI machine's pgvector build may crash on them)."""
import datetime
import hashlib
import math
import uuid

WORDS = {
    "en": (
        "the retrieval index stores every chunk with its embedding so that a question "
        "finds passages by meaning rather than by keyword while metadata filters keep "
        "results inside one tenant document or language and a reranker orders them "
        "before the model answers with citations to the source page"
    ).split(),
    "de": "Größe Straße Übersicht Datenbank Abfrage Einbettung Schlüssel Wörterbuch äußerst Maß".split(),
    "fr": "données requête élément où déjà façon hôpital naïve coût être".split(),
    "ja": ["検索", "拡張", "生成", "埋め込み", "ベクトル", "データベース", "東京", "日本語の文章"],
    "zh": ["向量", "检索", "增强", "生成", "数据库", "文档", "切片"],
    "ar": ["قاعدة", "البيانات", "البحث", "المتجه", "المستند"],
    "he": ["מסד", "נתונים", "חיפוש", "וקטור"],
    "ru": ["поиск", "вектор", "документ", "база", "данных"],
    "emoji": ["🚀", "👩🏽‍💻", "🇩🇪", "✅", "🧠", "📄", "🤖", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢"],
    "odd": ["it's", '"quoted"', "back\\slash", "$$dollar$$", "tab\there", "zero\u200bwidth",
            "e\u0301", "semi;colon", "--comment", "/*c*/", "%_like", "NULL", "'); DROP TABLE x;--"],
}
LANGS = list(WORDS)
BASE_TIME = datetime.datetime(2024, 5, 1, 9, 30, 0, 123456, tzinfo=datetime.timezone.utc)


def words(rng, n, lang=None):
    out = []
    for _ in range(n):
        lg = lang or (rng.choice(LANGS) if rng.random() < 0.25 else "en")
        out.append(rng.choice(WORDS[lg]))
    return " ".join(out)


def sentence(rng, lang=None):
    s = words(rng, rng.randint(6, 18), lang)
    return s[:1].upper() + s[1:] + rng.choice([".", ".", "?", "!", " …"])


def paragraph(rng, n=None, lang=None):
    return " ".join(sentence(rng, lang) for _ in range(n or rng.randint(2, 6)))


def markdown_section(rng, heading, paragraphs=None):
    parts = [f"## {heading}", ""]
    for i in range(paragraphs or rng.randint(1, 4)):
        parts.append(paragraph(rng))
        parts.append("")
        if i == 0 and rng.random() < 0.3:
            parts += ["```sql", "select id, content from documents where metadata @> '{\"lang\": \"en\"}';", "```", ""]
        if rng.random() < 0.15:
            parts += ["| key | value |", "|---|---|", f"| `{words(rng, 1)}` | {words(rng, 3)} |", ""]
    return "\n".join(parts).rstrip() + "\n"


def long_text(rng, size):
    """Markdown of at least `size` UTF-8 bytes (over D1's 100 KB statement
    limit when asked for more: pgflare must write such a row in pieces)."""
    out, n = [], 0
    while n < size:
        p = markdown_section(rng, sentence(rng), 3)
        out.append(p)
        n += len(p.encode())
    return "\n".join(out)


def vector(rng, dims):
    """A unit vector as pgvector's text input."""
    xs = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = math.sqrt(sum(x * x for x in xs)) or 1.0
    return "[" + ",".join(f"{x / norm:.7g}" for x in xs) + "]"


def uuid4(rng):
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def sha256(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode())
    return h.hexdigest()


def at(rng, days=120):
    """A timestamp within `days` after the fixed base time."""
    return BASE_TIME + datetime.timedelta(seconds=rng.randrange(days * 86400), microseconds=rng.randrange(10**6))


def slug(text):
    keep = [c.lower() if c.isascii() and c.isalnum() else "-" for c in text]
    return "-".join(filter(None, "".join(keep).split("-")))[:60] or "section"
