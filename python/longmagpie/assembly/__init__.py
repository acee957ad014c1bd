"""② Assembly: question/answer rows (or conversations) become tokenized multi-document chat samples."""

from longmagpie.assembly.assembler import AssembleConfig, Assembler, assemble, tokenize
from longmagpie.assembly.conversations import encode_conversations
from longmagpie.assembly.tokenizer import load_tokenizer

__all__ = ["AssembleConfig", "Assembler", "assemble", "encode_conversations", "load_tokenizer", "tokenize"]
