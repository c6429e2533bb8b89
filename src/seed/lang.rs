//! Per-language vocabularies for the generated documentation text.
//!
//! The lists are small (a few dozen words each) but enough to give chunks
//! realistic scripts, byte lengths and tokenisation behaviour: Latin with
//! diacritics, Cyrillic, Arabic (right-to-left) and CJK without spaces.

pub(crate) struct Lang {
    /// ISO 639-1 code, used in URLs, metadata and `documents.language`.
    pub code: &'static str,
    /// Capitalised sentence openers (so no case mapping is ever needed).
    pub openers: &'static [&'static str],
    pub words: &'static [&'static str],
    /// Between words of a sentence ("" for Japanese and Chinese).
    pub word_sep: &'static str,
    /// Ends a sentence, including the space before the next one if any.
    pub sentence_end: &'static str,
    pub sections: &'static [&'static str],
    /// First words of document titles.
    pub title_heads: &'static [&'static str],
    pub authors: &'static [&'static str],
}

#[rustfmt::skip]
pub(crate) const LANGS: &[Lang] = &[
    Lang {
        code: "en",
        openers: &[
            "The", "This", "Each", "When", "Our", "Every", "Most", "Before", "After", "If",
        ],
        words: &[
            "request", "token", "index", "vector", "search", "document", "user", "account",
            "billing", "limit", "retry", "cache", "server", "client", "query", "result", "error",
            "timeout", "policy", "storage", "region", "replica", "update", "delete", "create",
            "embedding", "chunk", "metadata", "returns", "requires", "supports", "configured",
            "automatically", "quickly", "securely", "the", "a", "with", "for", "and", "without",
            "between", "every",
        ],
        word_sep: " ",
        sentence_end: ". ",
        sections: &[
            "Overview", "Getting started", "Configuration", "Troubleshooting", "Limits", "FAQ",
        ],
        title_heads: &[
            "How to", "Understanding", "Guide to", "Reference:", "Configuring", "Migrating",
        ],
        authors: &["Alice Johnson", "Bob Smith", "Carol O'Neil", "Dave Lee"],
    },
    Lang {
        code: "de",
        openers: &[
            "Der", "Die", "Das", "Jeder", "Wenn", "Unsere", "Bevor", "Nach", "Ein", "Für",
        ],
        words: &[
            "Anfrage", "Schlüssel", "Index", "Vektor", "Suche", "Dokument", "Benutzer", "Konto",
            "Abrechnung", "Grenze", "Wiederholung", "Zwischenspeicher", "Server", "Abfrage",
            "Ergebnis", "Fehler", "Zeitüberschreitung", "Richtlinie", "Speicher", "Region",
            "Aktualisierung", "Löschung", "größer", "schnell", "sicher", "automatisch", "wird",
            "werden", "unterstützt", "benötigt", "liefert", "über", "für", "mit", "ohne", "und",
            "zwischen", "nämlich", "Straße", "Größe", "gemäß", "Einstellungen",
        ],
        word_sep: " ",
        sentence_end: ". ",
        sections: &[
            "Überblick", "Erste Schritte", "Konfiguration", "Fehlerbehebung", "Grenzwerte",
        ],
        title_heads: &[
            "So funktioniert", "Einführung in", "Leitfaden:", "Referenz:", "Migration von",
        ],
        authors: &["Jürgen Müller", "Anna Schäfer", "Lukas Weiß", "Sophie Groß"],
    },
    Lang {
        code: "fr",
        openers: &[
            "Le", "La", "Chaque", "Lorsque", "Notre", "Avant", "Après", "Si", "Les", "Ce",
        ],
        words: &[
            "requête", "jeton", "index", "vecteur", "recherche", "document", "utilisateur",
            "compte", "facturation", "limite", "nouvelle tentative", "cache", "serveur", "client",
            "résultat", "erreur", "délai", "politique", "stockage", "région", "réplique",
            "mise à jour", "suppression", "création", "fragment", "métadonnées", "renvoie",
            "nécessite", "prend en charge", "configuré", "automatiquement", "rapidement",
            "sécurisé", "le", "la", "avec", "pour", "et", "sans", "entre", "chaque", "où", "déjà",
            "à", "être",
        ],
        word_sep: " ",
        sentence_end: ". ",
        sections: &[
            "Présentation", "Premiers pas", "Configuration", "Dépannage", "Limites",
        ],
        title_heads: &[
            "Comment", "Comprendre", "Guide :", "Référence :", "Migrer vers",
        ],
        authors: &[
            "Élodie Lefèvre", "François Dupré", "Zoé Mercier", "Gaël Rivière",
        ],
    },
    Lang {
        code: "es",
        openers: &[
            "El", "La", "Cada", "Cuando", "Nuestro", "Antes", "Después", "Si", "Los", "Este",
        ],
        words: &[
            "solicitud", "token", "índice", "vector", "búsqueda", "documento", "usuario", "cuenta",
            "facturación", "límite", "reintento", "caché", "servidor", "cliente", "consulta",
            "resultado", "error", "tiempo de espera", "política", "almacenamiento", "región",
            "réplica", "actualización", "eliminación", "creación", "fragmento", "metadatos",
            "devuelve", "requiere", "admite", "configurado", "automáticamente", "rápidamente",
            "seguro", "el", "la", "con", "para", "y", "sin", "entre", "cada", "año", "también",
        ],
        word_sep: " ",
        sentence_end: ". ",
        sections: &[
            "Introducción", "Primeros pasos", "Configuración", "Solución de problemas",
        ],
        title_heads: &["Cómo", "Entender", "Guía de", "Referencia:", "Migración a"],
        authors: &["José Martínez", "Lucía Peña", "Ángel Núñez", "María Ibáñez"],
    },
    Lang {
        code: "ja",
        openers: &[
            "この", "各", "すべての", "通常、", "次に、", "まず、", "ただし、", "例えば、",
        ],
        words: &[
            "リクエスト", "トークン", "インデックス", "ベクトル", "検索", "文書", "ユーザー", "アカウント", "請求", "制限", "再試行",
            "キャッシュ", "サーバー", "クライアント", "クエリ", "結果", "エラー", "タイムアウト", "ポリシー", "ストレージ", "リージョン",
            "更新", "削除", "作成", "埋め込み", "チャンク", "メタデータ", "は", "が", "を", "に", "で", "と", "の", "から",
            "まで", "します", "されます", "できます", "必要です", "自動的に", "安全に", "高速に",
        ],
        word_sep: "",
        sentence_end: "。",
        sections: &[
            "概要", "はじめに", "設定", "トラブルシューティング", "制限事項",
        ],
        title_heads: &[
            "使い方：", "入門：", "ガイド：", "リファレンス：", "移行手順：",
        ],
        authors: &["佐藤 花子", "鈴木 一郎", "高橋 美咲", "田中 健"],
    },
    Lang {
        code: "ar",
        openers: &["يجب", "عند", "كل", "قبل", "بعد", "إذا", "هذا", "تقوم"],
        words: &[
            "طلب", "رمز", "فهرس", "متجه", "بحث", "مستند", "مستخدم", "حساب", "فوترة", "حد",
            "إعادة المحاولة", "ذاكرة التخزين", "خادم", "عميل", "استعلام", "نتيجة", "خطأ", "مهلة",
            "سياسة", "تخزين", "منطقة", "نسخة", "تحديث", "حذف", "إنشاء", "تضمين", "جزء",
            "بيانات وصفية", "يعيد", "يتطلب", "يدعم", "تلقائيا", "بسرعة", "بأمان", "في", "من",
            "إلى", "على", "مع", "بدون", "بين", "و",
        ],
        word_sep: " ",
        sentence_end: ". ",
        sections: &["نظرة عامة", "البدء", "الإعدادات", "استكشاف الأخطاء", "الحدود"],
        title_heads: &["كيفية", "فهم", "دليل", "مرجع:", "الترحيل إلى"],
        authors: &["أحمد علي", "فاطمة حسن", "محمد سعيد", "ليلى يوسف"],
    },
    Lang {
        code: "ru",
        openers: &[
            "Каждый", "Когда", "Этот", "Перед", "После", "Если", "Наш", "Все",
        ],
        words: &[
            "запрос", "токен", "индекс", "вектор", "поиск", "документ", "пользователь", "аккаунт",
            "оплата", "лимит", "повтор", "кэш", "сервер", "клиент", "результат", "ошибка",
            "тайм-аут", "политика", "хранилище", "регион", "реплика", "обновление", "удаление",
            "создание", "эмбеддинг", "фрагмент", "метаданные", "возвращает", "требует",
            "поддерживает", "настроен", "автоматически", "быстро", "безопасно", "в", "с", "для",
            "и", "без", "между", "ещё", "объём",
        ],
        word_sep: " ",
        sentence_end: ". ",
        sections: &[
            "Обзор", "Начало работы", "Настройка", "Устранение неполадок", "Ограничения",
        ],
        title_heads: &[
            "Как", "Понимание", "Руководство:", "Справочник:", "Миграция на",
        ],
        authors: &[
            "Иван Петров", "Ольга Смирнова", "Алексей Иванов", "Мария Кузнецова",
        ],
    },
    Lang {
        code: "zh",
        openers: &["每个", "当", "这个", "在", "如果", "我们的", "所有", "首先"],
        words: &[
            "请求", "令牌", "索引", "向量", "搜索", "文档", "用户", "账户", "计费", "限制", "重试", "缓存", "服务器", "客户端",
            "查询", "结果", "错误", "超时", "策略", "存储", "区域", "副本", "更新", "删除", "创建", "嵌入", "分块", "元数据",
            "返回", "需要", "支持", "自动", "快速", "安全", "的", "和", "与", "在", "之间", "没有", "可以", "已经",
        ],
        word_sep: "",
        sentence_end: "。",
        sections: &["概述", "快速入门", "配置", "故障排除", "限制"],
        title_heads: &["如何", "理解", "指南：", "参考：", "迁移到"],
        authors: &["王伟", "李娜", "张敏", "刘洋"],
    },
];

/// Technical terms sprinkled into every language, as real docs do.
#[rustfmt::skip]
pub(crate) const TECH_TERMS: &[&str] = &[
    "API", "HTTP 429", "JSON", "SDK", "OAuth 2.0", "v2.3.1", "Postgres", "pgvector", "p95",
    "UTF-8", "TLS 1.3", "gRPC", "S3", "k8s", "`GET /v1/items`", "128 MiB", "99.9%", "ID",
];

/// One per topic centroid (K = 16); ASCII so they can appear in URLs.
#[rustfmt::skip]
pub(crate) const TOPICS: &[&str] = &[
    "authentication", "billing", "vector-search", "rate-limits", "webhooks", "storage",
    "analytics", "deployment", "security", "observability", "sdk", "migrations", "caching",
    "permissions", "notifications", "data-export",
];

/// Vocabulary for `tags` (documents and chunks).
#[rustfmt::skip]
pub(crate) const TAGS: &[&str] = &[
    "api", "auth", "billing", "guide", "faq", "reference", "tutorial", "security", "performance",
    "deprecated", "beta", "internal", "how-to", "troubleshooting", "release-notes", "migration",
];

#[rustfmt::skip]
pub(crate) const SOURCES: &[&str] = &[
    "confluence", "notion", "github-wiki", "zendesk", "pdf-import", "website",
];

#[rustfmt::skip]
pub(crate) const ORGS: &[&str] = &[
    "Acme Corp", "Globex GmbH", "Initech S.A.", "Umbrella KK", "Stark Industries",
];
