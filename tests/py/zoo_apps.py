"""Rows and a day of changes for the zoo's application schemas (Supabase's
own examples and guides, and the multi-tenant layout); the vector-store
libraries' schemas are in zoo_schemas.py, which holds the registry these
register in. Shapes:

  nods                frontmatter meta {"title", "description", ...}
  chatgpt_your_files  Markdown sections with their file's heading
  multitenant         chunk metadata with arrays and nesting; tags text[]
  supabase_*          Supabase's guides: plain title/content rows
"""
from psycopg.types.json import Jsonb

import zoo_text as t
from zoo_schemas import pick_until, zoo


class nods:
    @staticmethod
    def insert_page(cur, rng, path, parent, sections, long_at=None):
        title = t.sentence(rng)
        meta = {"title": title, "description": t.sentence(rng, "en"),
                "subtitle": t.words(rng, 4) if rng.random() < 0.3 else None, "sidebar_label": title[:24]}
        body = []
        for s in range(sections):
            heading = t.sentence(rng)
            content = t.long_text(rng, 110_000) if s == long_at else t.markdown_section(rng, heading)
            body.append((content, heading))
        page_id = cur.execute(
            "INSERT INTO nods_page (parent_page_id, path, checksum, meta, type, source) VALUES (%s, %s, %s, %s, %s, %s)"
            " RETURNING id", (parent, path, t.sha256(*[b[0] for b in body]), Jsonb(meta), "markdown", "guide"),
        ).fetchone()[0]
        rows = [(page_id, c, len(c) // 4, None if rng.random() < 0.01 else t.vector(rng, 1536), t.slug(h), h)
                for c, h in body]
        cur.executemany("INSERT INTO nods_page_section (page_id, content, token_count, embedding, slug, heading)"
                        " VALUES (%s, %s, %s, %s::vector, %s, %s)", rows)
        return page_id

    @classmethod
    def seed(cls, conn, rng):
        cur = conn.cursor()
        for top in ["ai", "auth", "database", "functions", "storage", "realtime"]:
            # For "auth" and "storage" the section page (guides/auth.mdx) was
            # written after its sub-pages: generate-embeddings.ts created the
            # children first (no parent page yet) and re-parented them on a
            # later run ("Parent page has changed"), so children have smaller
            # ids than their parent.
            late_parent = top in ("auth", "storage")
            root = None if late_parent else cls.insert_page(cur, rng, f"/guides/{top}", None, rng.randint(2, 5))
            for c in range(rng.randint(3, 5)):
                child = cls.insert_page(cur, rng, f"/guides/{top}/topic-{c}", root, rng.randint(3, 9),
                                        long_at=1 if (top, c) == ("database", 2) else None)
                for g in range(rng.randint(0, 3)):
                    cls.insert_page(cur, rng, f"/guides/{top}/topic-{c}/part-{g}", child, rng.randint(2, 7))
            if late_parent:
                root = cls.insert_page(cur, rng, f"/guides/{top}", None, rng.randint(2, 5))
                cur.execute("UPDATE nods_page SET parent_page_id = %s WHERE path LIKE %s AND parent_page_id IS NULL"
                            " AND id <> %s", (root, f"/guides/{top}/%", root))

    @classmethod
    def day(cls, conn, rng):
        cur = conn.cursor()
        # Whole subtrees removed (the docs moved elsewhere): pages bottom-up
        # (parent_page_id has no cascade), sections go with their page.
        groups = cur.execute(
            "SELECT split_part(p.path, '/', 3), count(s.id) FROM nods_page p LEFT JOIN nods_page_section s"
            " ON s.page_id = p.id GROUP BY 1 ORDER BY 1").fetchall()
        for top in pick_until(rng, groups, 100):
            for parts in (5, 4, 3):
                cur.execute("DELETE FROM nods_page WHERE split_part(path, '/', 3) = %s"
                            " AND array_length(string_to_array(path, '/'), 1) = %s", (top, parts))
        conn.commit()
        tops = [r[0] for r in cur.execute("SELECT id FROM nods_page WHERE parent_page_id IS NULL ORDER BY path")]
        # Re-parenting: the children of one section move under another.
        cur.execute("UPDATE nods_page SET parent_page_id = %s WHERE parent_page_id = %s", (tops[0], tops[-1]))
        # New pages, one under an existing page, one at the top.
        child, path = cur.execute("SELECT id, path FROM nods_page WHERE parent_page_id = %s ORDER BY path LIMIT 1",
                                  (tops[0],)).fetchone()
        cls.insert_page(cur, rng, f"{path}/part-new", child, 6)
        cls.insert_page(cur, rng, "/guides/queues", None, 5)
        # A page whose checksum changed: nods deletes its sections and embeds them again.
        page = cur.execute("SELECT page_id FROM nods_page_section GROUP BY 1 ORDER BY count(*) DESC, 1"
                           " LIMIT 1").fetchone()[0]
        cur.execute("DELETE FROM nods_page_section WHERE page_id = %s", (page,))
        rows = [(page, t.markdown_section(rng, f"Neu {k} ✨"), 100, t.vector(rng, 1536), f"neu-{k}", f"Neu {k} ✨")
                for k in range(4)]
        cur.executemany("INSERT INTO nods_page_section (page_id, content, token_count, embedding, slug, heading)"
                        " VALUES (%s, %s, %s, %s::vector, %s, %s)", rows)
        cur.execute("UPDATE nods_page SET checksum = %s WHERE id = %s", (t.sha256(rng.random()), page))
        # Section edits: text, re-embedding.
        ids = [r[0] for r in cur.execute("SELECT id FROM nods_page_section ORDER BY id")]
        for i in rng.sample(ids, 10):
            cur.execute("UPDATE nods_page_section SET heading = heading || ' (v2)' WHERE id = %s", (i,))
        for i in rng.sample(ids, 8):
            cur.execute("UPDATE nods_page_section SET embedding = %s::vector WHERE id = %s", (t.vector(rng, 1536), i))


nods = zoo({"public.nods_page": "id", "public.nods_page_section": "id"})(nods)


class chatgpt_your_files:
    @staticmethod
    def insert_document(cur, rng, user, i, sections):
        name = f"{t.slug(t.words(rng, 2, 'en'))}-{i}.md"
        obj = t.uuid4(rng)
        cur.execute("INSERT INTO storage.objects (id, bucket_id, name, owner, created_at) VALUES (%s, 'files', %s, %s, %s)",
                    (obj, f"{user}/{name}", user, t.at(rng)))
        doc = cur.execute("INSERT INTO documents (name, storage_object_id, created_by, created_at)"
                          " VALUES (%s, %s, %s, %s) RETURNING id", (name, obj, user, t.at(rng))).fetchone()[0]
        # processMarkdown: one section per heading, the heading path in front.
        rows = [(doc, f"# {name}\n" + t.markdown_section(rng, t.sentence(rng)),
                 None if rng.random() < 0.015 else t.vector(rng, 384)) for _ in range(sections)]
        cur.executemany("INSERT INTO document_sections (document_id, content, embedding) VALUES (%s, %s, %s::vector)",
                        rows)

    @classmethod
    def seed(cls, conn, rng):
        cur = conn.cursor()
        users = [t.uuid4(rng) for _ in range(6)]
        for k, u in enumerate(users):
            cur.execute("INSERT INTO auth.users (id, email) VALUES (%s, %s)", (u, f"user{k}+zoo@example.com"))
        for i in range(36):
            cls.insert_document(cur, rng, rng.choice(users), i, rng.randint(5, 15))

    @classmethod
    def day(cls, conn, rng):
        cur = conn.cursor()
        # Files removed: their documents go, sections by cascade.
        groups = cur.execute("SELECT document_id, count(*) FROM document_sections GROUP BY 1 ORDER BY 1").fetchall()
        cur.execute("DELETE FROM documents WHERE id = ANY(%s)", (pick_until(rng, groups, 100),))
        conn.commit()
        users = [r[0] for r in cur.execute("SELECT id FROM auth.users ORDER BY id")]
        cls.insert_document(cur, rng, users[0], 100, 12)
        ids = [r[0] for r in cur.execute("SELECT id FROM document_sections ORDER BY id")]
        for i in rng.sample(ids, 12):
            cur.execute("UPDATE document_sections SET content = content || %s, embedding = %s::vector WHERE id = %s",
                        ("\n\nZusatz: Größe ≠ Maß 🚀", t.vector(rng, 384), i))
        for i in rng.sample(ids, 5):
            cur.execute("UPDATE document_sections SET embedding = NULL WHERE id = %s", (i,))


chatgpt_your_files = zoo({"public.documents": "id", "public.document_sections": "id"})(chatgpt_your_files)


class multitenant:
    @staticmethod
    def insert_document(cur, rng, org, author, i, chunks, when):
        tags = rng.sample(["policy", "howto", "legal", "onboarding", "api", "faq", "intern"], rng.randint(0, 3))
        doc = cur.execute(
            "INSERT INTO kb_documents (org_id, title, source_uri, mime_type, tags, metadata, created_by, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (org, t.sentence(rng), f"s3://kb-{str(org)[:8]}/{i}.pdf", "application/pdf", tags,
             Jsonb({"pages": chunks, "ocr": rng.random() < 0.2}), author, when)).fetchone()[0]
        rows = []
        for k in range(chunks):
            meta = {"page": 1 + k, "heading_path": [t.sentence(rng)[:30], t.words(rng, 2)],
                    "lang": rng.choice(["de", "en", "fr"])}
            rows.append((t.uuid4(rng), org, doc, k, t.paragraph(rng), rng.randint(40, 400),
                         rng.sample(tags, len(tags)) if tags else None, Jsonb(meta),
                         None if rng.random() < 0.012 else t.vector(rng, 768), "nomic-embed-text-v1.5", when))
        cur.executemany(
            "INSERT INTO kb_chunks (id, org_id, document_id, chunk_index, content, token_count, tags, metadata,"
            " embedding, embedding_model, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::vector, %s, %s)",
            rows)

    @classmethod
    def seed(cls, conn, rng):
        cur = conn.cursor()
        for slug, plan in [("acme", "enterprise"), ("globex", "team"), ("initech", "free"), ("umbrella-eu", "team")]:
            org = t.uuid4(rng)
            cur.execute("INSERT INTO orgs (id, slug, name, plan, settings, created_at) VALUES (%s, %s, %s, %s, %s, %s)",
                        (org, slug, slug.title(), plan, Jsonb({"sso": plan == "enterprise", "region": "eu"}),
                         t.at(rng)))
            members = [t.uuid4(rng) for _ in range(rng.randint(3, 5))]
            for k, m in enumerate(members):
                cur.execute("INSERT INTO org_members (org_id, user_id, role, invited_by, joined_at)"
                            " VALUES (%s, %s, %s, %s, %s)",
                            (org, m, ["owner", "admin", "member", "viewer", "member"][k], members[0] if k else None,
                             t.at(rng)))
            for i in range(rng.randint(9, 13)):
                cls.insert_document(cur, rng, org, rng.choice(members), i, rng.randint(4, 10), t.at(rng))
            # An archived document: it and its chunks are soft-deleted before the migration.
            cls.insert_document(cur, rng, org, members[0], 99, 3, t.at(rng))
            cur.execute("UPDATE kb_chunks SET deleted_at = %s WHERE org_id = %s AND document_id ="
                        " (SELECT max(id) FROM kb_documents WHERE org_id = %s)", (t.at(rng), org, org))
            cur.execute("UPDATE kb_documents SET deleted_at = %s WHERE org_id = %s AND id ="
                        " (SELECT max(id) FROM kb_documents WHERE org_id = %s)", (t.at(rng), org, org))
            if slug == "acme":
                # Archived by the app without touching its chunks: they are
                # live rows below a soft-deleted parent (pgflare leaves them out).
                cls.insert_document(cur, rng, org, members[0], 98, 3, t.at(rng))
                cur.execute("UPDATE kb_documents SET deleted_at = %s WHERE org_id = %s AND id ="
                            " (SELECT max(id) FROM kb_documents WHERE org_id = %s)", (t.at(rng), org, org))

    @classmethod
    def day(cls, conn, rng):
        cur = conn.cursor()
        # A tenant leaves: everything of theirs goes by cascade; and one more document elsewhere.
        cur.execute("DELETE FROM orgs WHERE slug = 'initech'")
        globex, = cur.execute("SELECT id FROM orgs WHERE slug = 'globex'").fetchone()
        cur.execute("DELETE FROM kb_documents WHERE (org_id, id) IN (SELECT org_id, id FROM kb_documents"
                    " WHERE org_id = %s ORDER BY id DESC LIMIT 3)", (globex,))
        conn.commit()
        acme, = cur.execute("SELECT id FROM orgs WHERE slug = 'acme'").fetchone()
        members = [r[0] for r in cur.execute("SELECT user_id FROM org_members WHERE org_id = %s ORDER BY user_id",
                                             (acme,))]
        cls.insert_document(cur, rng, acme, members[0], 100, 8, t.BASE_TIME)
        ids = [r[0] for r in cur.execute("SELECT id FROM kb_chunks ORDER BY id")]
        for i in rng.sample(ids, 10):
            cur.execute("UPDATE kb_chunks SET tags = array_append(coalesce(tags, '{}'), 'reviewed'), updated_at = now()"
                        " WHERE id = %s", (i,))
        for i in rng.sample(ids, 8):
            cur.execute("UPDATE kb_chunks SET content = content || ' ✎', embedding = %s::vector, updated_at = now()"
                        " WHERE id = %s", (t.vector(rng, 768), i))
        # A document archived: it and its chunks are soft-deleted.
        doc = cur.execute("SELECT org_id, id FROM kb_documents WHERE org_id = %s ORDER BY id LIMIT 1", (acme,)).fetchone()
        cur.execute("UPDATE kb_chunks SET deleted_at = now() WHERE org_id = %s AND document_id = %s", doc)
        cur.execute("UPDATE kb_documents SET deleted_at = now() WHERE org_id = %s AND id = %s", doc)
        # Another document archived with its chunks left alone, and the one
        # archived that way before the migration restored: its chunks return.
        doc = cur.execute("SELECT org_id, id FROM kb_documents WHERE org_id = %s AND deleted_at IS NULL"
                          " ORDER BY id LIMIT 1", (acme,)).fetchone()
        cur.execute("UPDATE kb_documents SET deleted_at = now() WHERE org_id = %s AND id = %s", doc)
        cur.execute("UPDATE kb_documents SET deleted_at = NULL WHERE org_id = %s AND id = (SELECT max(id)"
                    " FROM kb_documents d WHERE org_id = %s AND deleted_at IS NOT NULL AND EXISTS (SELECT 1"
                    " FROM kb_chunks c WHERE c.document_id = d.id AND c.deleted_at IS NULL))", (acme, acme))
        # A member leaves: their documents keep going, created_by becomes NULL (SET NULL (created_by)).
        leaver = cur.execute("SELECT created_by FROM kb_documents WHERE org_id = %s AND created_by <> %s"
                             " AND deleted_at IS NULL ORDER BY id LIMIT 1", (acme, members[0])).fetchone()
        if leaver:
            cur.execute("DELETE FROM org_members WHERE org_id = %s AND user_id = %s", (acme, leaver[0]))


multitenant = zoo({"public.orgs": "id", "public.org_members": "(org_id, user_id)",
                   "public.kb_documents": ("(org_id, id)", "deleted_at IS NULL"),
                   "public.kb_chunks": ("id", "deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM kb_documents d"
                                              " WHERE d.org_id = kb_chunks.org_id AND d.id = kb_chunks.document_id"
                                              " AND d.deleted_at IS NOT NULL)")})(multitenant)


class supabase_auto_embeddings:
    @staticmethod
    def insert(cur, rng, n, embedded_share):
        rows = [(t.sentence(rng), t.paragraph(rng, rng.randint(2, 8)),
                 t.vector(rng, 1536) if rng.random() < embedded_share else None, t.at(rng)) for _ in range(n)]
        cur.executemany("INSERT INTO documents (title, content, embedding, created_at) VALUES (%s, %s, %s::halfvec, %s)",
                        rows)

    @classmethod
    def seed(cls, conn, rng):
        cls.insert(conn.cursor(), rng, 330, 0.92)

    @classmethod
    def day(cls, conn, rng):
        cur = conn.cursor()
        ids = [r[0] for r in cur.execute("SELECT id FROM documents ORDER BY id")]
        cur.execute("DELETE FROM documents WHERE id = ANY(%s)", (rng.sample(ids, 110),))
        conn.commit()
        cls.insert(cur, rng, 40, 0.0)  # queued, not embedded yet
        ids = [r[0] for r in cur.execute("SELECT id FROM documents ORDER BY id")]
        for i in rng.sample(ids, 15):  # the update trigger clears the embedding
            cur.execute("UPDATE documents SET content = content || ' (edited)' WHERE id = %s", (i,))
        conn.commit()
        # The Edge Function catches up with part of the queue.
        pending = [r[0] for r in cur.execute("SELECT id FROM documents WHERE embedding IS NULL ORDER BY id")]
        for i in rng.sample(pending, len(pending) // 2):
            cur.execute("UPDATE documents SET embedding = %s::halfvec WHERE id = %s", (t.vector(rng, 1536), i))


supabase_auto_embeddings = zoo({"public.documents": "id"})(supabase_auto_embeddings)


class supabase_hybrid_search:
    DISHES = ["Spaghetti Marinara", "Pizza Margherita", "Shakshuka", "Ramen 🍜", "Bœuf bourguignon",
              "Käsespätzle", "Pad Thai", "Mole poblano", "Tarte Tatin", "Bibimbap"]

    @classmethod
    def insert(cls, cur, rng, n):
        rows = []
        for _ in range(n):
            dish = rng.choice(cls.DISHES)
            rows.append((f"{dish}: {t.paragraph(rng, rng.randint(2, 6))}",
                         None if rng.random() < 0.02 else t.vector(rng, 512)))
        cur.executemany("INSERT INTO documents (content, embedding) VALUES (%s, %s::vector)", rows)

    @classmethod
    def seed(cls, conn, rng):
        cls.insert(conn.cursor(), rng, 360)

    @classmethod
    def day(cls, conn, rng):
        cur = conn.cursor()
        ids = [r[0] for r in cur.execute("SELECT id FROM documents ORDER BY id")]
        cur.execute("DELETE FROM documents WHERE id = ANY(%s)", (rng.sample(ids, 105),))
        conn.commit()
        cls.insert(cur, rng, 30)
        ids = [r[0] for r in cur.execute("SELECT id FROM documents ORDER BY id")]
        for i in rng.sample(ids, 15):  # new text: fts follows (generated), the embedding with it
            cur.execute("UPDATE documents SET content = content || ' with tomato sauce', embedding = %s::vector"
                        " WHERE id = %s", (t.vector(rng, 512), i))
        for i in rng.sample(ids, 3):
            cur.execute("UPDATE documents SET embedding = NULL WHERE id = %s", (i,))


supabase_hybrid_search = zoo({"public.documents": "id"})(supabase_hybrid_search)
