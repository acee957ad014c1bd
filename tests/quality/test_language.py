"""Language detection with the real lingua detector on real sentences, and the filter's counts, exactly."""

from __future__ import annotations

import pyarrow as pa
import pytest
from support import ipc_bytes, require

require("lingua")

from longmagpie.harvest.output import ROW_SCHEMA  # noqa: E402
from longmagpie.quality import language  # noqa: E402
from longmagpie.quality.language import (  # noqa: E402
    DEFAULT_MIN_CONFIDENCE,
    UNKNOWN,
    detect_languages,
    language_filter,
    supported_languages,
)

#: Written for this test: questions and statements of the kind a harvest yields, twelve per language.
SENTENCES: dict[str, list[str]] = {
    "en": [
        "What were the main causes of the financial crisis described in the report?",
        "Why did the committee reject the proposal to extend the railway line?",
        "How many people attended the opening ceremony of the new library?",
        "The author argues that public transport should be free for students.",
        "Which of the following statements about the experiment is correct?",
        "Summarize the key findings of the second chapter in three sentences.",
        "According to the text, when did the company move its headquarters?",
        "Is the new medication more effective than the treatment used before?",
        "The river flooded the lower part of the town after three days of heavy rain.",
        "Who was responsible for the design of the bridge mentioned in the article?",
        "Explain how the authors measured the temperature of the ocean surface.",
        "What does the passage say about the role of women in the early factories?",
    ],
    "fr": [
        "Quelles sont les principales causes de la crise décrite dans le rapport ?",
        "Pourquoi le comité a-t-il rejeté la proposition de prolonger la ligne de chemin de fer ?",
        "Combien de personnes ont assisté à la cérémonie d'ouverture de la nouvelle bibliothèque ?",
        "L'auteur affirme que les transports publics devraient être gratuits pour les étudiants.",
        "Résumez les principaux résultats du deuxième chapitre en trois phrases.",
        "Selon le texte, quand l'entreprise a-t-elle déménagé son siège social ?",
        "Le nouveau médicament est-il plus efficace que le traitement utilisé auparavant ?",
        "La rivière a inondé la partie basse de la ville après trois jours de fortes pluies.",
        "Qui était responsable de la conception du pont mentionné dans l'article ?",
        "Expliquez comment les auteurs ont mesuré la température de la surface de l'océan.",
        "Que dit le passage sur le rôle des femmes dans les premières usines ?",
        "Nous avons visité le musée avant de déjeuner dans un petit restaurant du quartier.",
    ],
    "de": [
        "Was waren die Hauptursachen der im Bericht beschriebenen Finanzkrise?",
        "Warum hat der Ausschuss den Vorschlag zur Verlängerung der Bahnstrecke abgelehnt?",
        "Wie viele Menschen haben an der Eröffnungsfeier der neuen Bibliothek teilgenommen?",
        "Der Autor meint, dass der öffentliche Nahverkehr für Studenten kostenlos sein sollte.",
        "Fassen Sie die wichtigsten Ergebnisse des zweiten Kapitels in drei Sätzen zusammen.",
        "Wann hat das Unternehmen laut dem Text seinen Hauptsitz verlegt?",
        "Ist das neue Medikament wirksamer als die bisher verwendete Behandlung?",
        "Der Fluss überschwemmte nach drei Tagen starken Regens den unteren Teil der Stadt.",
        "Wer war für die Gestaltung der im Artikel erwähnten Brücke verantwortlich?",
        "Erklären Sie, wie die Autoren die Temperatur der Meeresoberfläche gemessen haben.",
        "Was sagt der Abschnitt über die Rolle der Frauen in den frühen Fabriken?",
        "Wir haben gestern Abend mit unseren Nachbarn im Garten gegessen.",
    ],
    "es": [
        "¿Cuáles fueron las principales causas de la crisis financiera descrita en el informe?",
        "¿Por qué el comité rechazó la propuesta de ampliar la línea de ferrocarril?",
        "¿Cuántas personas asistieron a la ceremonia de inauguración de la nueva biblioteca?",
        "El autor sostiene que el transporte público debería ser gratuito para los estudiantes.",
        "Resume los principales resultados del segundo capítulo en tres frases.",
        "Según el texto, ¿cuándo trasladó la empresa su sede central?",
        "¿Es el nuevo medicamento más eficaz que el tratamiento utilizado antes?",
        "El río inundó la parte baja del pueblo después de tres días de lluvias intensas.",
        "¿Quién fue el responsable del diseño del puente mencionado en el artículo?",
        "Explica cómo midieron los autores la temperatura de la superficie del océano.",
        "¿Qué dice el pasaje sobre el papel de las mujeres en las primeras fábricas?",
        "Ayer por la tarde caminamos por el parque con nuestros amigos.",
    ],
    "zh": [
        "报告中描述的金融危机的主要原因是什么？",
        "委员会为什么拒绝了延长铁路线的提议？",
        "有多少人参加了新图书馆的开幕式？",
        "作者认为公共交通应该对学生免费。",
        "请用三句话总结第二章的主要发现。",
        "根据文章，公司是什么时候搬迁总部的？",
        "新药比以前使用的治疗方法更有效吗？",
        "连续三天的大雨过后，河水淹没了城镇的低洼地区。",
        "文章中提到的那座桥是由谁设计的？",
        "请解释作者是如何测量海洋表面温度的。",
        "这段文字对早期工厂中妇女的作用有何描述？",
        "我们昨天晚上和邻居一起在花园里吃饭。",
    ],
}
TEXTS = [s for texts in SENTENCES.values() for s in texts]
LABELS = [code for code, texts in SENTENCES.items() for _ in texts]
#: The five languages of SENTENCES: a detector over these loads five models, not all of them.
FIVE = list(SENTENCES)


def test_every_sentence_detected_over_all_languages():
    """The default detector (all 75 languages, high accuracy) gets all 60 sentences right."""
    got = detect_languages(TEXTS)
    wrong = [(t, want, g) for t, want, g in zip(TEXTS, LABELS, got, strict=True) if g != want]
    assert wrong == []


def test_candidate_languages_restrict_the_answers():
    assert detect_languages(TEXTS, languages=FIVE) == LABELS
    two = detect_languages(TEXTS, languages=["fr", "EN"])  # case-insensitive codes
    assert set(two) <= {"en", "fr", None}
    assert [g for g, want in zip(two, LABELS, strict=True) if want in ("en", "fr")] == LABELS[:24]


def test_english_or_not_is_keep_over_all_languages_not_one_candidate():
    """One candidate is refused (lingua's single-language mode calls most German sentences English)."""
    with pytest.raises(ValueError, match="at least two candidates"):
        detect_languages(SENTENCES["en"], languages=["en"])
    got = detect_languages(SENTENCES["en"] + SENTENCES["de"])
    assert got == ["en"] * 12 + ["de"] * 12


def test_texts_without_language_get_none():
    assert detect_languages([None, "", "   \n", "12345", "???", "What changed then?"], languages=FIVE) == [
        None,
        None,
        None,
        None,
        None,
        "en",
    ]
    assert detect_languages([]) == []


def test_min_confidence():
    short = "Who wrote it?"  # lingua: English at about 0.17 over all 75 languages
    assert detect_languages([short]) == ["en"]
    assert detect_languages([short], min_confidence=0.5) == [None]
    assert detect_languages([short], min_confidence=0.0) == ["en"]
    assert 0 < DEFAULT_MIN_CONFIDENCE < 0.17


def test_only_the_leading_characters_are_read():
    text = "The committee met on Monday. " + "Der Ausschuss hat den Vorschlag zur Verlängerung abgelehnt. " * 20
    assert detect_languages([text], languages=FIVE, max_chars=28) == ["en"]
    assert detect_languages([text], languages=FIVE, max_chars=None) == ["de"]
    assert detect_languages([text], languages=FIVE) == ["de"]  # 1,000 characters: mostly German


def test_batches_give_what_one_call_gives(monkeypatch):
    whole = detect_languages(TEXTS, languages=FIVE)
    monkeypatch.setattr(language, "BATCH_SIZE", 7)
    assert detect_languages(TEXTS, languages=FIVE) == whole


def test_detector_is_built_once_per_candidate_set():
    language._detector.cache_clear()
    detect_languages(["Where is the station?"], languages=["en", "fr"])
    detect_languages(["Où est la gare ?"], languages=["FR", "en", "fr"])
    info = language._detector.cache_info()
    assert (info.misses, info.hits) == (1, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"languages": ["en", "xx"]}, "unknown language code 'xx'"),
        ({"languages": "en"}, "not the string 'en'"),
        ({"languages": []}, "languages is empty"),
        ({"min_confidence": 1.5}, "min_confidence"),
        ({"min_confidence": -0.1}, "min_confidence"),
        ({"max_chars": 0}, "max_chars"),
    ],
)
def test_detect_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        detect_languages(["What is it?"], **kwargs)
    if "xx" in message:
        assert "en, eo, es" in str(err.value)  # the allowed codes are listed
        assert "zh" in str(err.value) and "zu" in str(err.value)


def test_supported_languages_are_iso_639_1_codes():
    codes = supported_languages()
    assert len(codes) == 75 and codes == tuple(sorted(codes))
    assert {"en", "fr", "de", "es", "zh", "ja", "ar", "ru"} <= set(codes)


# (query language, answer language) per row; None: an empty query.
PAIRS = [
    ("en", "en"),
    ("fr", "fr"),
    ("en", "de"),
    ("en", "en"),
    ("zh", "en"),
    (None, "en"),
    ("en", "en"),
    ("fr", "fr"),
    ("en", "de"),
    ("en", "en"),
]


def rows() -> pa.Table:
    """Harvest rows (the harvest's own column types) whose query and answer languages follow PAIRS."""
    used = {code: 0 for code in SENTENCES}
    data = {"id": [], "doc_id": [], "context": [], "query": [], "answer": []}
    for i, (q, a) in enumerate(PAIRS):
        data["id"].append(f"row{i}")
        data["doc_id"].append(f"doc{i // 3}")
        data["context"].append("Some document text. " * 5)
        if q is None:
            data["query"].append("")
        else:
            data["query"].append(SENTENCES[q][used[q] % 12])
            used[q] += 1
        data["answer"].append(SENTENCES[a][-1 - used[a] % 12])
        used[a] += 1
    schema = pa.schema([ROW_SCHEMA.field(name) for name in data])
    return pa.table(data, schema=schema)


def test_filter_records_languages_and_keeps_everything_without_keep():
    table, report = language_filter(rows(), languages=FIVE)
    assert table.column_names == ["id", "doc_id", "context", "query", "answer", "query_lang", "answer_lang"]
    assert table.schema.field("query_lang").type == pa.string()
    assert table.column("query_lang").to_pylist() == [q for q, _ in PAIRS]
    assert table.column("answer_lang").to_pylist() == [a for _, a in PAIRS]
    assert report == {
        "columns": ["query", "answer"],
        "keep": None,
        "rows_before": 10,
        "rows_after": 10,
        "before": {"query": {"en": 6, "fr": 2, UNKNOWN: 1, "zh": 1}, "answer": {"en": 6, "de": 2, "fr": 2}},
        "removed": {},
        "after": {"query": {"en": 6, "fr": 2, UNKNOWN: 1, "zh": 1}, "answer": {"en": 6, "de": 2, "fr": 2}},
    }
    assert list(report["before"]["query"]) == ["en", "fr", UNKNOWN, "zh"]  # most frequent first, ties by key


def test_filter_keeps_rows_whose_every_column_is_kept_and_counts_each_removal_once():
    table, report = language_filter(rows(), keep=["en"], languages=FIVE)
    assert table.column("id").to_pylist() == ["row0", "row3", "row6", "row9"]  # input order
    assert report["removed"] == {"language:query": 4, "language:answer": 2}  # fr fr zh empty; then en->de twice
    assert report["rows_before"] - report["rows_after"] == sum(report["removed"].values()) == 6
    assert report["after"] == {"query": {"en": 4}, "answer": {"en": 4}}

    table, report = language_filter(rows(), keep=["fr", "en"], columns=["answer"], languages=FIVE)
    assert table.column("id").to_pylist() == ["row0", "row1", "row3", "row4", "row5", "row6", "row7", "row9"]
    assert table.column_names[-1] == "answer_lang" and "query_lang" not in table.column_names
    assert report["keep"] == ["en", "fr"]
    assert report["removed"] == {"language:answer": 2}
    assert report["after"] == {"answer": {"en": 6, "fr": 2}}


def test_filter_counts_under_the_first_failing_column_in_column_order():
    _, report = language_filter(rows(), keep=["en"], columns=["answer", "query"], languages=FIVE)
    assert report["removed"] == {"language:answer": 4, "language:query": 2}  # fr fr de de; then zh, empty


def test_filter_over_all_languages_and_reruns_replace_the_columns():
    first, report = language_filter(rows(), keep=["en"])
    assert report["removed"] == {"language:query": 4, "language:answer": 2}
    again, report = language_filter(first, keep=["en"])
    assert again.column_names == first.column_names
    assert report["removed"] == {"language:query": 0, "language:answer": 0}
    assert ipc_bytes(again) == ipc_bytes(first)


def test_filter_is_deterministic():
    one = language_filter(rows(), keep=["en", "fr"], languages=FIVE)
    two = language_filter(rows(), keep=["en", "fr"], languages=FIVE)
    assert ipc_bytes(one[0]) == ipc_bytes(two[0]) and one[1] == two[1]


def test_filter_on_an_empty_table():
    table, report = language_filter(rows().slice(0, 0), keep=["en"], languages=FIVE)
    assert table.num_rows == 0 and table.column_names[-2:] == ["query_lang", "answer_lang"]
    assert report["before"] == {"query": {}, "answer": {}}
    assert report["removed"] == {"language:query": 0, "language:answer": 0}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"columns": ["query", "response"]}, "column 'response' is missing"),
        ({"columns": ["doc_id", "id"], "keep": ["en"], "table": "ints"}, "column 'id' is int64, not a string"),
        ({"columns": []}, "columns is empty"),
        ({"columns": "query"}, "not the string 'query'"),
        ({"keep": ["en", "klingon"]}, "unknown language code 'klingon'"),
        ({"keep": ["de"], "languages": ["en", "fr"]}, r"keep has \['de'\]"),
        ({"keep": ["en"], "languages": ["xx", "en"]}, "unknown language code 'xx'"),
        ({"keep": ["en"], "languages": ["en"]}, "at least two candidates"),
        ({"min_confidence": 2}, "min_confidence"),
    ],
)
def test_filter_rejects_bad_input_before_any_work(monkeypatch, kwargs, message):
    def no_detection(*_args, **_kwargs):
        raise AssertionError("detection started before the arguments were checked")

    monkeypatch.setattr(language, "_detector", no_detection)
    table = rows()
    if kwargs.pop("table", None) == "ints":
        table = table.set_column(0, "id", pa.array(range(table.num_rows), pa.int64()))
    with pytest.raises(ValueError, match=message) as err:
        language_filter(table, **kwargs)
    if "klingon" in message:
        assert "allowed ISO 639-1 codes: af, ar," in str(err.value)
