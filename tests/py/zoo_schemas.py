"""Rows and a day of changes for the zoo's vector-store schemas (fixtures/zoo/),
in the shapes the library behind each schema writes them. Used by
zoo_data.py; `rng` is a seeded random.Random, so the rows are the same on
every run. Metadata shapes, per schema:

  langchain_supabase  LangChain.js loaders + RecursiveCharacterTextSplitter:
                      {"source", "pdf": {"version", "info": {...}, "metadata",
                      "totalPages"}, "loc": {"pageNumber", "lines": {"from", "to"}}}
  llamaindex_vecs     llama_index node_to_metadata_dict: file metadata of
                      SimpleDirectoryReader + "_node_content" (the node as a
                      JSON string, text included: a few KB), "_node_type",
                      "document_id", "doc_id", "ref_doc_id"
  langchain_pgvector  Python loaders: PyPDFLoader (+ add_start_index),
                      support tickets with nested objects, web pages
  haystack            DocumentSplitter meta: file_path, source_id,
                      page_number, split_id, split_idx_start, _split_overlap
                      (a list of objects); blobs with blob_meta
The application schemas (Supabase's examples and guides, the multi-tenant
layout) are in zoo_apps.py, which registers them in ZOO too.
"""
import collections
import json

from psycopg.types.json import Json, Jsonb

import zoo_text as t

# tables: {table: key expression, or (key expression, condition of a live row)}
Zoo = collections.namedtuple("Zoo", "tables seed day")
ZOO = {}


def zoo(tables):
    def register(mod):
        ZOO[mod.__name__] = Zoo(tables, mod.seed, mod.day)
        return mod
    return register


def pick_until(rng, groups, need):
    """Shuffled groups (key, size) taken until their sizes reach `need`."""
    groups = list(groups)
    rng.shuffle(groups)
    chosen, total = [], 0
    for key, size in groups:
        if total >= need:
            break
        chosen.append(key)
        total += size
    return chosen


class langchain_supabase:
    @staticmethod
    def metadata(rng, src, page, line):
        if src["kind"] == "web":
            return {"source": src["name"], "loc": {"lines": {"from": line, "to": line + rng.randint(5, 30)}}}
        return {
            "source": src["name"],
            "pdf": {
                "version": "1.10.100",
                "info": {
                    "PDFFormatVersion": "1.7", "IsAcroFormPresent": False, "IsXFAPresent": False,
                    "Title": src["title"], "Author": src["author"],
                    "Creator": "Microsoft® Word für Microsoft 365", "Producer": "Microsoft® Word für Microsoft 365",
                    "CreationDate": "D:20230412093011+02'00'", "ModDate": "D:20240102120000Z",
                },
                "metadata": None,
                "totalPages": src["pages"],
            },
            "loc": {"pageNumber": page, "lines": {"from": line, "to": line + rng.randint(5, 40)}},
        }

    @staticmethod
    def source(rng, i):
        if rng.random() < 0.3:
            return {"kind": "web", "name": f"https://docs.example.com/guides/{t.slug(t.words(rng, 3, 'en'))}-{i}"}
        return {"kind": "pdf", "name": f"/Users/ana/Documents/Handbuch/{t.slug(t.words(rng, 2, 'en'))}-{i}.pdf",
                "title": t.sentence(rng), "author": rng.choice(["Zoë Müller", "José Núñez", "田中 太郎", "O'Brien"]),
                "pages": rng.randint(3, 60)}

    @classmethod
    def insert_source(cls, cur, rng, src, chunks, long_at=None):
        rows = []
        for c in range(chunks):
            content = t.long_text(rng, 120_000) if c == long_at else t.paragraph(rng, rng.randint(3, 9))
            emb = None if rng.random() < 0.012 else t.vector(rng, 1536)
            rows.append((content, Jsonb(cls.metadata(rng, src, 1 + c // 3, 1 + 20 * (c % 3))), emb))
        cur.executemany("INSERT INTO documents (content, metadata, embedding) VALUES (%s, %s, %s::vector)", rows)

    @classmethod
    def seed(cls, conn, rng):
        cur = conn.cursor()
        for i in range(32):
            long_at = 3 if i in (5, 17) else None
            cls.insert_source(cur, rng, cls.source(rng, i), rng.randint(8, 18), long_at)

    @classmethod
    def day(cls, conn, rng):
        cur = conn.cursor()
        # LangChain deletes by id; an app removes a whole file's chunks.
        groups = cur.execute("SELECT metadata->>'source', count(*) FROM documents GROUP BY 1 ORDER BY 1").fetchall()
        cur.execute("DELETE FROM documents WHERE metadata->>'source' = ANY(%s)", (pick_until(rng, groups, 110),))
        conn.commit()
        cls.insert_source(cur, rng, cls.source(rng, 100), 25)
        ids = [r[0] for r in cur.execute("SELECT id FROM documents ORDER BY id")]
        for i in rng.sample(ids, 15):
            cur.execute("UPDATE documents SET content = content || %s WHERE id = %s", ("\n\n(überarbeitet ✅)", i))
        for i in rng.sample(ids, 12):
            cur.execute("UPDATE documents SET metadata = jsonb_set(metadata, '{loc,lines,to}', to_jsonb(%s::int))"
                        " WHERE id = %s", (rng.randint(50, 90), i))
        for i in rng.sample(ids, 10):
            cur.execute("UPDATE documents SET embedding = %s::vector WHERE id = %s", (t.vector(rng, 1536), i))
        for i in rng.sample(ids, 3):
            cur.execute("UPDATE documents SET embedding = NULL WHERE id = %s", (i,))


langchain_supabase = zoo({"public.documents": "id"})(langchain_supabase)


class llamaindex_vecs:
    EXCLUDED = ["file_name", "file_type", "file_size", "creation_date", "last_modified_date", "last_accessed_date"]

    @classmethod
    def node(cls, rng, doc, idx, node_id, prev_id, next_id, start):
        text = t.markdown_section(rng, t.sentence(rng), rng.randint(2, 6))
        file_meta = dict(doc["meta"])
        rel = {"1": {"node_id": doc["id"], "node_type": "4", "metadata": file_meta, "hash": t.sha256(doc["id"])}}
        if prev_id:
            rel["2"] = {"node_id": prev_id, "node_type": "1", "metadata": file_meta, "hash": t.sha256(prev_id)}
        if next_id:
            rel["3"] = {"node_id": next_id, "node_type": "1", "metadata": {}, "hash": t.sha256(next_id)}
        node = {
            "id_": node_id, "embedding": None, "metadata": file_meta,
            "excluded_embed_metadata_keys": cls.EXCLUDED, "excluded_llm_metadata_keys": cls.EXCLUDED,
            "relationships": rel, "metadata_template": "{key}: {value}", "metadata_separator": "\n",
            "text": text, "mimetype": "text/plain", "start_char_idx": start, "end_char_idx": start + len(text),
            "metadata_seperator": "\n", "text_template": "{metadata_str}\n\n{content}", "class_name": "TextNode",
        }
        meta = dict(file_meta)
        meta.update({"_node_content": json.dumps(node), "_node_type": "TextNode",
                     "document_id": doc["id"], "doc_id": doc["id"], "ref_doc_id": doc["id"]})
        return meta, len(text)

    @classmethod
    def insert_doc(cls, cur, rng, i, nodes):
        name = f"{t.slug(t.words(rng, 2, 'en'))}-{i}.md"
        doc = {"id": t.uuid4(rng), "meta": {
            "file_path": f"/home/dev/data/essays/{name}", "file_name": name, "file_type": "text/markdown",
            "file_size": rng.randint(2_000, 90_000), "creation_date": "2024-03-01",
            "last_modified_date": f"2024-04-{rng.randint(10, 28)}"}}
        ids = [t.uuid4(rng) for _ in range(nodes)]
        rows, start = [], 0
        for k, node_id in enumerate(ids):
            meta, n = cls.node(rng, doc, k, node_id, ids[k - 1] if k else None,
                               ids[k + 1] if k + 1 < nodes else None, start)
            start += n
            rows.append((node_id, t.vector(rng, 1536), Jsonb(meta)))
        cur.executemany("INSERT INTO vecs.base_demo (id, vec, metadata) VALUES (%s, %s::vector, %s)"
                        " ON CONFLICT (id) DO UPDATE SET vec = EXCLUDED.vec, metadata = EXCLUDED.metadata", rows)

    @classmethod
    def seed(cls, conn, rng):
        cur = conn.cursor()
        for i in range(26):
            cls.insert_doc(cur, rng, i, rng.randint(8, 16))

    @classmethod
    def day(cls, conn, rng):
        cur = conn.cursor()
        # SupabaseVectorStore.delete(ref_doc_id) removes every node of a document.
        groups = cur.execute("SELECT metadata->>'ref_doc_id', count(*) FROM vecs.base_demo GROUP BY 1 ORDER BY 1")
        gone = pick_until(rng, groups.fetchall(), 105)
        cur.execute("DELETE FROM vecs.base_demo WHERE metadata->>'ref_doc_id' = ANY(%s)", (gone,))
        conn.commit()
        cls.insert_doc(cur, rng, 100, 15)
        ids = [r[0] for r in cur.execute("SELECT id FROM vecs.base_demo ORDER BY id")]
        for i in rng.sample(ids, 10):  # re-embedded (upsert with a new vector)
            cur.execute("UPDATE vecs.base_demo SET vec = %s::vector WHERE id = %s", (t.vector(rng, 1536), i))
        for i in rng.sample(ids, 10):  # file touched: metadata only
            cur.execute("UPDATE vecs.base_demo SET metadata = metadata || '{\"last_modified_date\": \"2024-06-01\"}'"
                        " WHERE id = %s", (i,))


llamaindex_vecs = zoo({"vecs.base_demo": "id"})(llamaindex_vecs)


class langchain_pgvector:
    COLLECTIONS = [
        ("handbook", {"embedding_model": "text-embedding-3-small", "owner": "people-ops"}, 170),
        ("support_tickets", {"embedding_model": "text-embedding-3-small", "retention_days": 365}, 125),
        ("changelog", None, 90),
    ]

    @staticmethod
    def cmetadata(rng, coll, k):
        if coll == "handbook":
            page = rng.randint(0, 40)
            return {"source": f"handbook/{rng.choice(['benefits', 'onboarding', 'security'])}-2024.pdf",
                    "page": page, "page_label": str(page + 1), "producer": "Skia/PDF m120", "creator": "Google Docs",
                    "creationdate": "2024-01-12T10:00:00+00:00", "total_pages": 41, "start_index": 1000 * k}
        if coll == "support_tickets":
            return {"ticket_id": 4700 + k, "customer": {"tier": rng.choice(["gold", "silver"]), "region": "eu-west"},
                    "tags": rng.sample(["billing", "refund", "login", "sso", "export"], 2),
                    "language": rng.choice(["de", "en", "ja"]), "resolved": rng.random() < 0.7,
                    "csat": rng.choice([1.5, 3.0, 4.5, 5]), "assignee": None}
        return {"source": "https://example.com/changelog", "title": t.sentence(rng, "en"),
                "language": "en", "version": f"2.{k // 10}.{k % 10}"}

    @classmethod
    def insert(cls, cur, rng, coll, coll_id, n, start=0):
        rows = [(t.uuid4(rng), coll_id, None if rng.random() < 0.01 else t.vector(rng, 1536),
                 t.paragraph(rng, rng.randint(2, 8)), Jsonb(cls.cmetadata(rng, coll, start + k))) for k in range(n)]
        cur.executemany("INSERT INTO langchain_pg_embedding (id, collection_id, embedding, document, cmetadata)"
                        " VALUES (%s, %s, %s::vector, %s, %s)", rows)

    @classmethod
    def seed(cls, conn, rng):
        cur = conn.cursor()
        for name, meta, n in cls.COLLECTIONS:
            coll_id = t.uuid4(rng)
            cur.execute("INSERT INTO langchain_pg_collection (uuid, name, cmetadata) VALUES (%s, %s, %s)",
                        (coll_id, name, Json(meta) if meta is not None else None))
            cls.insert(cur, rng, name, coll_id, n)

    @classmethod
    def day(cls, conn, rng):
        cur = conn.cursor()
        # PGVector.delete_collection(): the collection row, its embeddings by cascade.
        cur.execute("DELETE FROM langchain_pg_collection WHERE name = 'support_tickets'")
        conn.commit()
        handbook = cur.execute("SELECT uuid FROM langchain_pg_collection WHERE name = 'handbook'").fetchone()[0]
        cls.insert(cur, rng, "handbook", handbook, 20, start=500)
        ids = [r[0] for r in cur.execute("SELECT id FROM langchain_pg_embedding ORDER BY id")]
        for i in rng.sample(ids, 10):  # add_documents with the same ids overwrites
            cur.execute("UPDATE langchain_pg_embedding SET document = document || ' (rev 2)', embedding = %s::vector"
                        " WHERE id = %s", (t.vector(rng, 1536), i))
        for i in rng.sample(ids, 10):
            cur.execute("UPDATE langchain_pg_embedding SET cmetadata = cmetadata || '{\"reviewed\": true}' WHERE id = %s",
                        (i,))
        cur.execute("UPDATE langchain_pg_collection SET cmetadata = '{\"embedding_model\": \"text-embedding-3-large\"}'"
                    " WHERE name = 'changelog'")


langchain_pgvector = zoo({"public.langchain_pg_collection": "uuid", "public.langchain_pg_embedding": "id"})(
    langchain_pgvector)


class haystack:
    @staticmethod
    def insert_file(cur, rng, path, splits, long_at=None):
        source_id = t.sha256(path)
        rows, prev, start = [], None, 0
        for k in range(splits):
            content = t.long_text(rng, 150_000) if k == long_at else t.paragraph(rng, rng.randint(3, 10))
            meta = {"file_path": path, "source_id": source_id, "page_number": 1 + k // 2, "split_id": k,
                    "split_idx_start": start}
            if prev:
                meta["_split_overlap"] = [{"doc_id": prev, "range": [0, rng.randint(20, 200)]}]
            start += len(content)
            blob = blob_meta = mime = None
            if rng.random() < 0.1:
                blob = rng.randbytes(rng.randint(200, 6000))
                mime = "image/png"
                blob_meta = Jsonb({"file_name": f"figure-{k}.png", "width": 640, "height": 480})
            doc_id = t.sha256(content, json.dumps(meta, sort_keys=True), mime)
            emb = None if rng.random() < 0.012 else t.vector(rng, 768)
            rows.append((doc_id, emb, content, blob, blob_meta, mime, Jsonb(meta)))
            prev = doc_id
        cur.executemany("INSERT INTO haystack_documents (id, embedding, content, blob_data, blob_meta, blob_mime_type,"
                        " meta) VALUES (%s, %s::vector, %s, %s, %s, %s, %s)", rows)

    @classmethod
    def seed(cls, conn, rng):
        cur = conn.cursor()
        for i in range(28):
            path = f"reports/{2020 + i % 5}/{t.slug(t.words(rng, 2, 'en'))}-{i}.pdf"
            cls.insert_file(cur, rng, path, rng.randint(6, 18), long_at=2 if i == 9 else None)

    @classmethod
    def day(cls, conn, rng):
        cur = conn.cursor()
        # document_store.delete_documents(ids of a file's splits)
        groups = cur.execute("SELECT meta->>'file_path', count(*) FROM haystack_documents GROUP BY 1 ORDER BY 1")
        gone = pick_until(rng, groups.fetchall(), 100)
        cur.execute("DELETE FROM haystack_documents WHERE meta->>'file_path' = ANY(%s)", (gone,))
        conn.commit()
        cls.insert_file(cur, rng, "reports/2025/new-quarter.pdf", 14)
        ids = [r[0] for r in cur.execute("SELECT id FROM haystack_documents ORDER BY id")]
        for i in rng.sample(ids, 10):  # DuplicatePolicy.OVERWRITE: new embedding and meta
            cur.execute("UPDATE haystack_documents SET embedding = %s::vector, meta = meta || '{\"reviewed\": true}'"
                        " WHERE id = %s", (t.vector(rng, 768), i))
        for i in rng.sample(ids, 4):
            cur.execute("UPDATE haystack_documents SET embedding = NULL WHERE id = %s", (i,))


haystack = zoo({"public.haystack_documents": "id"})(haystack)
