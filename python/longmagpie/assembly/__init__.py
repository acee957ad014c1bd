"""② Assembly: question/answer rows (or conversations) become tokenized multi-document chat samples."""

from longmagpie.assembly.assembler import AssembleConfig, Assembler, assemble, load_tokenizer, tokenize
from longmagpie.assembly.conversations import encode_conversations

__all__ = ["AssembleConfig", "Assembler", "assemble", "encode_conversations", "load_tokenizer", "tokenize"]
