"""Reading and writing raw commit objects, byte for byte like git's sequencer does."""

from __future__ import annotations

import codecs
from dataclasses import dataclass

import pygit2

from palign.model import Identity

COMMIT_TYPE = pygit2.enums.ObjectType.COMMIT


@dataclass(frozen=True)
class CommitStyle:
    """The repository settings that shape the commits git's sequencer writes."""

    encoding: str = "utf-8"  # i18n.commitEncoding
    cleanup: str = "verbatim"  # commit.cleanup as the sequencer reads it (unset: verbatim)
    comment_char: bytes = b"#"  # core.commentChar

    @classmethod
    def of(cls, repo: pygit2.Repository) -> CommitStyle:
        config = repo.config

        def value(key: str) -> str | None:
            try:
                return str(config[key])
            except KeyError:
                return None

        encoding = value("i18n.commitEncoding") or "utf-8"
        try:
            encoding = codecs.lookup(encoding).name
        except LookupError:
            encoding = "utf-8"
        cleanup = value("commit.cleanup") or "verbatim"
        if cleanup not in ("verbatim", "whitespace", "strip", "scissors"):
            cleanup = "verbatim"  # "default" and unknown modes leave picked messages alone
        comment = (value("core.commentChar") or "#").encode()[:1] or b"#"
        return cls(encoding=encoding, cleanup=cleanup, comment_char=comment)


@dataclass(frozen=True)
class RawCommit:
    author: bytes
    message: bytes
    encoding: str | None


def read_commit(repo: pygit2.Repository, oid: pygit2.Oid) -> RawCommit:
    raw = repo.odb.read(oid)[1]
    header, _, message = raw.partition(b"\n\n")
    author = b""
    encoding: str | None = None
    for line in header.split(b"\n"):
        if line.startswith(b"author "):
            author = line[len(b"author ") :]
        elif line.startswith(b"encoding "):
            encoding = line[len(b"encoding ") :].decode("ascii", "replace")
    return RawCommit(author=author, message=message, encoding=encoding)


def _reencoded(commit: RawCommit, output: str) -> RawCommit:
    """The sequencer re-encodes a commit (author line and message alike) from the encoding
    it declares (UTF-8 when it declares none) into the output encoding; where the bytes do
    not convert, git keeps them as they are."""
    try:
        source = codecs.lookup(commit.encoding or "utf-8").name
    except LookupError:
        return commit
    if source == output:
        return commit
    try:
        return RawCommit(
            author=commit.author.decode(source).encode(output),
            message=commit.message.decode(source).encode(output),
            encoding=output,
        )
    except (UnicodeDecodeError, UnicodeEncodeError):
        return commit


def _cleaned(message: bytes, style: CommitStyle) -> bytes:
    """commit.cleanup as git applies it to a picked message (strbuf_stripspace)."""
    if style.cleanup == "verbatim":
        return message
    if style.cleanup == "scissors":
        marker = style.comment_char + b" ------------------------ >8 ------------------------\n"
        cut = message.find(marker)
        if cut == 0 or (cut > 0 and message[cut - 1 : cut] == b"\n"):
            message = message[:cut]
    out: list[bytes] = []
    empties = 0
    for line in message.split(b"\n"):
        if style.cleanup == "strip" and line.startswith(style.comment_char):
            continue
        line = line.rstrip(b" \t\n\r\v\f")
        if not line:
            empties += 1
            continue
        if empties and out:
            out.append(b"")
        empties = 0
        out.append(line)
    return b"".join(part + b"\n" for part in out)


_MAX_CODEPOINT = (0x7F, 0x7FF, 0xFFFF, 0x10FFFF)


def _first_invalid_utf8(data: bytes, start: int) -> int:
    """Offset of the first byte git's find_invalid_utf8 rejects, or -1 (commit.c, ported)."""
    index, end = start, len(data)
    while index < end:
        c = data[index]
        index += 1
        if c < 0x80:
            continue
        bad = index - 1
        extra = 0
        while c & 0x40:
            c = (c << 1) & 0xFF
            extra += 1
        if extra < 1 or extra > 3 or end - index < extra:
            return bad
        codepoint = (c & 0x7F) >> extra
        low, high = _MAX_CODEPOINT[extra - 1] + 1, _MAX_CODEPOINT[extra]
        for _ in range(extra):
            byte = data[index]
            index += 1
            codepoint = (codepoint << 6) | (byte & 0x3F)
            if byte & 0xC0 != 0x80:
                return bad
        if not low <= codepoint <= high or (codepoint & 0x1FF800) == 0xD800:
            return bad
        if (codepoint & 0xFFFE) == 0xFFFE or 0xFDD0 <= codepoint <= 0xFDEF:
            return bad
    return -1


def as_git_utf8(data: bytes) -> bytes:
    """What git's verify_utf8 makes of a commit it writes in UTF-8: each byte that is not
    part of valid UTF-8 is taken as Latin-1 and re-encoded."""
    if data.isascii():
        return data
    position = 0
    while True:
        bad = _first_invalid_utf8(data, position)
        if bad < 0:
            return data
        c = data[bad]
        data = data[:bad] + bytes((0xC0 + (c >> 6), 0x80 + (c & 0x3F))) + data[bad + 1 :]
        position = bad + 2


def write_commit(
    repo: pygit2.Repository,
    *,
    tree: pygit2.Oid,
    parents: list[pygit2.Oid],
    author: bytes,
    committer: bytes,
    message: bytes,
    encoding: str = "utf-8",
) -> pygit2.Oid:
    lines = [b"tree " + str(tree).encode()]
    lines += [b"parent " + str(parent).encode() for parent in parents]
    lines.append(b"author " + author)
    lines.append(b"committer " + committer)
    if encoding != "utf-8":
        lines.append(b"encoding " + _git_encoding_name(encoding))
        return repo.odb.write(COMMIT_TYPE, b"\n".join(lines) + b"\n\n" + message)
    return repo.odb.write(COMMIT_TYPE, as_git_utf8(b"\n".join(lines) + b"\n\n" + message))


def _git_encoding_name(codec_name: str) -> bytes:
    """The name git writes in the header: the configured spelling for the common ones."""
    names = {"iso8859-1": b"ISO-8859-1", "latin-1": b"ISO-8859-1", "cp1252": b"windows-1252"}
    return names.get(codec_name, codec_name.upper().encode())


_GIT_SPACE = b" \t\n\r"  # git's own isspace()


def _picked_message(message: bytes) -> bytes:
    """The message git's sequencer gives a picked commit: read as a C string (up to a NUL
    byte), with leading lines that hold only whitespace skipped (skip_blank_lines)."""
    message = message.split(b"\0", 1)[0]
    while message:
        end = message.find(b"\n")
        line = message if end < 0 else message[: end + 1]
        if line.strip(_GIT_SPACE):
            break
        message = message[len(line) :]
    return message


def replay_commit(
    repo: pygit2.Repository,
    original: pygit2.Oid,
    *,
    tree: pygit2.Oid,
    parent: pygit2.Oid,
    committer: bytes,
    style: CommitStyle,
) -> pygit2.Oid:
    """A copy of `original` on a new parent and tree: author and message kept, signatures
    dropped, in the repository's commit encoding and cleanup mode."""
    source = _reencoded(read_commit(repo, original), style.encoding)
    return write_commit(
        repo,
        tree=tree,
        parents=[parent],
        author=source.author,
        committer=committer,
        message=_cleaned(_picked_message(source.message), style),
        encoding=source.encoding if source.encoding and style.encoding != "utf-8" else "utf-8",
    )


def committer_identity(
    config_name: str | None, config_email: str | None, *, name: str | None = None, email: str | None = None
) -> Identity:
    """`name`/`email` (palign's settings) win over git config; a fixed fallback keeps
    commits possible."""
    return Identity(name=name or config_name or "palign", email=email or config_email or "palign@localhost")
