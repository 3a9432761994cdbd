"""The sentences the embedder tests compare, shared with data/make_minilm_reference.py."""

LONG_TEXT = " ".join(
    f"Sentence number {i} talks about hiking, cooking and debugging Python code." for i in range(60)
)
TEXTS = [
    "hello",
    "",
    "   ",
    "How do I reset my password?",
    "I went hiking in the Alps last summer and the views were breathtaking.",
    LONG_TEXT,
    "Ünïcödé façade, naïve café; Straße über Köln.",
    "日本語のテキストも埋め込めます。",
    "Привет, как дела? Всё хорошо.",
    "emoji 🚀🔥 and symbols ©®™ ±×÷",
    "def add(a: int, b: int) -> int:\n    return a + b",
    "3.14159 2,718 1e-9 -42 0xFF",
    "A",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "the quick brown fox jumps over the lazy dog",
    "Can you remind me to buy milk, eggs, bread and coffee tomorrow morning before work?",
    "tab\tseparated\tvalues\nand new lines",
    "My daughter's birthday party is on Saturday; she turns seven and wants a dinosaur cake.",
    LONG_TEXT[:900],
    "hello",
]
