"""Full-text search: a Whoosh index beside the archive that follows ``posts.change_seq``.

The only package that imports Whoosh (frozen upstream), so the engine can be swapped. ::

    archive (SQLite)                          index (<db>.whoosh/)
    posts.change_seq ──── update_index ────▶  one document per post: text fields analysed
      every insert, new version and           (folded, CJK by character), columns key (a
      tombstone takes a higher number         digest of the post id), seq, received, flags;
                                              no text stored. groupsync-index.json records
                                              the change_seq reflected, after the commit.
    search ◀──── seq of the top hits ───────  hits and snippets come from the archive
                                              (posts.change_seq is unique and indexed).

Catching up re-indexes every post whose ``change_seq`` is above the recorded one, so a
crash between the database commit and the index commit heals on the next run. Group
names are resolved against the archive at query time, so a renamed group needs nothing.

Three things make Whoosh fast enough for 100,000 posts: a codec whose posting blocks are
packed arrays (positions as gaps), so an index is under 60 % of mail's text; builders that
keep postings in arrays, run in parallel processes and write few segments (each repeats the
dictionary of the words it holds); and a block-at-a-time query
evaluator (:class:`evaluator._Bulk`) over Whoosh's parser, storage and BM25F, which Whoosh's own
per-document matchers only back up.

One module per part (this package re-exports the public names of all of them):

    analysis    the tokenizer: words, CJK by character, accent folding
    codec       the compact posting format (positions, packed posting blocks)
    schema      the fields of a post's document, the codec, the post key
    state       where an index lives and its state file
    documents   archive rows and attachment text → index documents
    indexer     update, rebuild (parallel builders) and check
    query       the mail-client query language → Whoosh queries and filters
    filters     group, date and flag filters over the index's columns
    evaluator   the block-at-a-time query evaluator
    searchers   open indexes kept for the process
    highlight   snippets
    api         search: hits and results, one per post or one per thread
"""

from __future__ import annotations

from .analysis import (
    MailTokenizer as MailTokenizer,
)
from .analysis import (
    fold as fold,
)
from .analysis import (
    terms_of as terms_of,
)
from .api import (
    SORTS as SORTS,
)
from .api import (
    IndexNotCurrentError as IndexNotCurrentError,
)
from .api import (
    SearchHit as SearchHit,
)
from .api import (
    SearchResults as SearchResults,
)
from .api import (
    ThreadHit as ThreadHit,
)
from .api import (
    ThreadResults as ThreadResults,
)
from .api import (
    all_matching_posts as all_matching_posts,
)
from .api import (
    check_query as check_query,
)
from .api import (
    search as search,
)
from .api import (
    search_threads as search_threads,
)
from .codec import (
    MAX_PHRASE as MAX_PHRASE,
)
from .codec import (
    MAX_POSITIONS as MAX_POSITIONS,
)
from .codec import (
    ZLIB_LEVEL as ZLIB_LEVEL,
)
from .codec import (
    CompactCodec as CompactCodec,
)
from .codec import (
    CompactPositions as CompactPositions,
)
from .documents import (
    ATTACHMENT_BYTES_CAP as ATTACHMENT_BYTES_CAP,
)
from .documents import (
    ATTACHMENT_TEXT_CAP as ATTACHMENT_TEXT_CAP,
)
from .evaluator import (
    MAX_EXPANSION as MAX_EXPANSION,
)
from .filters import (
    DocFilter as DocFilter,
)
from .filters import (
    Filtered as Filtered,
)
from .highlight import (
    SNIPPET_CHARS as SNIPPET_CHARS,
)
from .highlight import (
    SNIPPET_CONTEXT as SNIPPET_CONTEXT,
)
from .highlight import (
    SNIPPET_FRAGMENTS as SNIPPET_FRAGMENTS,
)
from .indexer import (
    BATCH as BATCH,
)
from .indexer import (
    POOL_LIMIT as POOL_LIMIT,
)
from .indexer import (
    SMALL_SEGMENT as SMALL_SEGMENT,
)
from .indexer import (
    CheckReport as CheckReport,
)
from .indexer import (
    IndexReport as IndexReport,
)
from .indexer import (
    IndexWriteError as IndexWriteError,
)
from .indexer import (
    Progress as Progress,
)
from .indexer import (
    check_index as check_index,
)
from .indexer import (
    rebuild_index as rebuild_index,
)
from .indexer import (
    update_index as update_index,
)
from .query import (
    QueryError as QueryError,
)
from .query import (
    parse_query as parse_query,
)
from .schema import (
    ALIASES as ALIASES,
)
from .schema import (
    CODEC as CODEC,
)
from .schema import (
    DEFAULT_FIELDS as DEFAULT_FIELDS,
)
from .schema import (
    FIELD_BOOSTS as FIELD_BOOSTS,
)
from .schema import (
    FIELDS as FIELDS,
)
from .schema import (
    FLAG_ATTACHMENT as FLAG_ATTACHMENT,
)
from .schema import (
    FLAG_DELETED as FLAG_DELETED,
)
from .schema import (
    INDEX_FORMAT as INDEX_FORMAT,
)
from .schema import (
    SCHEMA as SCHEMA,
)
from .schema import (
    MailText as MailText,
)
from .schema import (
    PairText as PairText,
)
from .schema import (
    field_list as field_list,
)
from .searchers import (
    close_indexes as close_indexes,
)
from .state import (
    STATE_FILE as STATE_FILE,
)
from .state import (
    index_path_for as index_path_for,
)

__all__ = [
    "CheckReport",
    "IndexNotCurrentError",
    "IndexReport",
    "IndexWriteError",
    "QueryError",
    "SearchHit",
    "SearchResults",
    "ThreadHit",
    "ThreadResults",
    "all_matching_posts",
    "check_index",
    "check_query",
    "close_indexes",
    "index_path_for",
    "rebuild_index",
    "search",
    "search_threads",
    "update_index",
]
