"""library management and teams: folders, asset tags, alt text, keywords, downloads, soft delete, use details;
members, one-time login links, shares

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_SEARCHED = "name, description, tags, prompt, keywords, alt_text"
_VALUES = (
    "new.id, new.name, new.description, replace(new.tags, ',', ' '), coalesce(new.prompt, ''), "
    "replace(new.keywords, ',', ' '), new.alt_text"
)
SQLITE_SEARCH = [
    # FTS5 index over the searchable fields; rowid = assets.id. Kept in step by triggers.
    f"CREATE VIRTUAL TABLE assets_fts USING fts5({_SEARCHED}, tokenize = 'porter unicode61 remove_diacritics 2')",
    f"INSERT INTO assets_fts(rowid, {_SEARCHED}) SELECT {_VALUES.replace('new.', '')} FROM assets",
    f"""CREATE TRIGGER assets_fts_ai AFTER INSERT ON assets BEGIN
        INSERT INTO assets_fts(rowid, {_SEARCHED}) VALUES ({_VALUES});
    END""",
    """CREATE TRIGGER assets_fts_ad AFTER DELETE ON assets BEGIN
        DELETE FROM assets_fts WHERE rowid = old.id;
    END""",
    f"""CREATE TRIGGER assets_fts_au AFTER UPDATE OF {_SEARCHED} ON assets BEGIN
        DELETE FROM assets_fts WHERE rowid = old.id;
        INSERT INTO assets_fts(rowid, {_SEARCHED}) VALUES ({_VALUES});
    END""",
]
POSTGRES_SEARCH = [
    """ALTER TABLE assets ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', coalesce(name, '')), 'A') ||
        setweight(to_tsvector('english', replace(coalesce(tags, ''), ',', ' ')), 'A') ||
        setweight(to_tsvector('english', replace(coalesce(keywords, ''), ',', ' ')), 'A') ||
        setweight(to_tsvector('english', coalesce(description, '')), 'B') ||
        setweight(to_tsvector('english', coalesce(alt_text, '')), 'B') ||
        setweight(to_tsvector('english', coalesce(prompt, '')), 'C')) STORED""",
    "CREATE INDEX ix_assets_search_vector ON assets USING gin (search_vector)",
]


def _fk(table: str, column: str, target: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"), ondelete=ondelete
    )


def _create_team_tables() -> None:
    op.create_table(
        "members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        _fk("members", "account_id", "accounts", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_members")),
        sa.UniqueConstraint("account_id", "email", name="uq_members_account_email"),
        sa.CheckConstraint("role IN ('owner', 'admin', 'member')", name=op.f("ck_members_role_known")),
    )
    op.create_index("ix_members_email", "members", ["email"])
    op.create_table(
        "login_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("role", sa.String(16), nullable=True),
        sa.Column("created_by", sa.String(254), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        _fk("login_tokens", "account_id", "accounts", "CASCADE"),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_login_tokens")),
        sa.CheckConstraint("purpose IN ('login', 'invite')", name=op.f("ck_login_tokens_purpose_known")),
    )
    op.create_table(
        "shares",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=True),
        sa.Column("folder_id", sa.Integer(), nullable=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("permission", sa.String(8), nullable=False),
        sa.Column("created_by", sa.String(254), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        _fk("shares", "account_id", "accounts", "CASCADE"),
        _fk("shares", "asset_id", "assets", "CASCADE"),
        _fk("shares", "folder_id", "folders", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shares")),
        sa.UniqueConstraint("asset_id", "email", name="uq_shares_asset_email"),
        sa.UniqueConstraint("folder_id", "email", name="uq_shares_folder_email"),
        sa.CheckConstraint("permission IN ('view', 'use', 'edit')", name=op.f("ck_shares_permission_known")),
        sa.CheckConstraint("(asset_id IS NULL) <> (folder_id IS NULL)", name=op.f("ck_shares_one_target")),
    )
    op.create_index("ix_shares_email", "shares", ["email"])


def _create_library_tables() -> None:
    op.create_table(
        "folders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("parent_key", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        _fk("folders", "account_id", "accounts", "CASCADE"),
        _fk("folders", "parent_id", "folders", "RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_folders")),
        sa.UniqueConstraint("account_id", "parent_key", "name", name="uq_folders_account_parent_name"),
    )
    op.create_table(
        "asset_tags",
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        _fk("asset_tags", "asset_id", "assets", "CASCADE"),
        _fk("asset_tags", "account_id", "accounts", "CASCADE"),
        sa.PrimaryKeyConstraint("asset_id", "tag", name=op.f("pk_asset_tags")),
    )
    op.create_index("ix_asset_tags_account_tag", "asset_tags", ["account_id", "tag", "created_at", "asset_id"])


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    _drop_search(sqlite)
    _create_library_tables()
    # SQLite rebuilds the table to add a foreign key (storage.migrate runs this with foreign keys off).
    with op.batch_alter_table("assets") as batch:
        batch.add_column(sa.Column("folder_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_assets_folder_id_folders"), "folders", ["folder_id"], ["id"],
                                 ondelete="SET NULL")  # fmt: skip
    op.add_column("assets", sa.Column("alt_text", sa.Text(), nullable=False, server_default=""))
    op.add_column("assets", sa.Column("keywords", sa.Text(), nullable=False, server_default=""))
    op.add_column("assets", sa.Column("download_count", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("assets", sa.Column("deleted_at", sa.DateTime(), nullable=True))
    # Each distinct folder name becomes a top-level folder of its account.
    op.execute(
        "INSERT INTO folders (account_id, parent_key, name, created_at) "
        "SELECT DISTINCT account_id, 0, substr(folder, 1, 120), CURRENT_TIMESTAMP FROM assets "
        "WHERE folder IS NOT NULL AND folder <> ''"
    )
    op.execute(
        "UPDATE assets SET folder_id = (SELECT folders.id FROM folders WHERE folders.account_id = assets.account_id "
        "AND folders.parent_key = 0 AND folders.name = substr(assets.folder, 1, 120)) WHERE folder IS NOT NULL"
    )
    _copy_tags()
    op.execute("ALTER TABLE assets DROP COLUMN folder")  # SQLite 3.35+ drops a column in place
    for name, columns in _ASSET_INDEXES.items():
        op.create_index(name, "assets", columns)
    for column in ("agent_id", "agent_name", "post_id"):
        op.add_column("asset_uses", sa.Column(column, sa.String(255), nullable=True))
    op.add_column("asset_uses", sa.Column("platform", sa.String(64), nullable=True))
    op.create_index("ix_asset_uses_account_created", "asset_uses", ["account_id", "created_at"])
    _create_team_tables()
    for statement in SQLITE_SEARCH if sqlite else POSTGRES_SEARCH:
        op.execute(statement)


_ASSET_INDEXES = {
    "ix_assets_account_kind": ["account_id", "kind", "created_at"],
    "ix_assets_account_folder": ["account_id", "folder_id", "created_at"],
    "ix_assets_account_category": ["account_id", "category", "created_at"],
    "ix_assets_account_favorite": ["account_id", "favorite", "created_at"],
    "ix_assets_account_uses": ["account_id", "use_count"],
    "ix_assets_account_name": ["account_id", "name"],
    "ix_assets_blob": ["blob_key"],
}


def _copy_tags() -> None:
    """One ``asset_tags`` row per tag of each asset (``assets.tags`` is comma-separated)."""
    bind = op.get_bind()
    rows = [
        {"asset_id": asset_id, "tag": tag, "account_id": account_id, "created_at": created_at}
        for asset_id, account_id, tags, created_at in bind.execute(
            sa.text("SELECT id, account_id, tags, created_at FROM assets")
        )
        for tag in dict.fromkeys(t.strip()[:64] for t in (tags or "").split(","))
        if tag
    ]
    if rows:
        insert = (
            "INSERT INTO asset_tags (asset_id, tag, account_id, created_at) "
            "VALUES (:asset_id, :tag, :account_id, :created_at)"
        )
        bind.execute(sa.text(insert), rows)


def downgrade() -> None:
    """Back to 0007 (run by ``storage.migrate.downgrade``): each asset's folder becomes its folder's name again,
    deleted assets go for good, and what 0007 has no place for goes: members, links, shares, use details, alt
    text, keywords, download counts."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    _drop_search(sqlite)
    for table in ("shares", "login_tokens", "members"):
        op.drop_table(table)
    op.drop_index("ix_asset_uses_account_created", table_name="asset_uses")
    for column in ("agent_id", "agent_name", "post_id", "platform"):
        op.execute(f"ALTER TABLE asset_uses DROP COLUMN {column}")
    op.execute("DELETE FROM asset_uses WHERE asset_id IN (SELECT id FROM assets WHERE deleted_at IS NOT NULL)")
    op.execute("DELETE FROM assets WHERE deleted_at IS NOT NULL")
    for name in _ASSET_INDEXES:
        op.drop_index(name, table_name="assets")
    op.add_column("assets", sa.Column("folder", sa.String(255), nullable=True))
    op.execute("UPDATE assets SET folder = (SELECT folders.name FROM folders WHERE folders.id = assets.folder_id)")
    with op.batch_alter_table("assets") as batch:
        batch.drop_constraint(op.f("fk_assets_folder_id_folders"), type_="foreignkey")
        batch.drop_column("folder_id")
    for column in ("alt_text", "keywords", "download_count", "deleted_at"):
        op.execute(f"ALTER TABLE assets DROP COLUMN {column}")
    op.drop_table("asset_tags")
    op.drop_table("folders")
    for statement in _SQLITE_SEARCH_0001 if sqlite else _POSTGRES_SEARCH_0001:
        op.execute(statement)


def _drop_search(sqlite: bool) -> None:
    if sqlite:
        for trigger in ("ai", "ad", "au"):
            op.execute(f"DROP TRIGGER IF EXISTS assets_fts_{trigger}")
        op.execute("DROP TABLE IF EXISTS assets_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_assets_search_vector")
        op.execute("ALTER TABLE assets DROP COLUMN IF EXISTS search_vector")


_OLD = "name, description, tags, prompt"
_OLD_VALUES = "new.id, new.name, new.description, replace(new.tags, ',', ' '), coalesce(new.prompt, '')"
#: The search index as 0001 made it (0007's code reads it).
_SQLITE_SEARCH_0001 = [
    f"CREATE VIRTUAL TABLE assets_fts USING fts5({_OLD}, tokenize = 'porter unicode61 remove_diacritics 2')",
    f"INSERT INTO assets_fts(rowid, {_OLD}) SELECT {_OLD_VALUES.replace('new.', '')} FROM assets",
    f"CREATE TRIGGER assets_fts_ai AFTER INSERT ON assets BEGIN INSERT INTO assets_fts(rowid, {_OLD}) "
    f"VALUES ({_OLD_VALUES}); END",
    "CREATE TRIGGER assets_fts_ad AFTER DELETE ON assets BEGIN DELETE FROM assets_fts WHERE rowid = old.id; END",
    f"CREATE TRIGGER assets_fts_au AFTER UPDATE OF {_OLD} ON assets BEGIN "
    f"DELETE FROM assets_fts WHERE rowid = old.id; INSERT INTO assets_fts(rowid, {_OLD}) VALUES ({_OLD_VALUES}); END",
]
_POSTGRES_SEARCH_0001 = [
    """ALTER TABLE assets ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', coalesce(name, '')), 'A') ||
        setweight(to_tsvector('english', replace(coalesce(tags, ''), ',', ' ')), 'A') ||
        setweight(to_tsvector('english', coalesce(description, '')), 'B') ||
        setweight(to_tsvector('english', coalesce(prompt, '')), 'C')) STORED""",
    "CREATE INDEX ix_assets_search_vector ON assets USING gin (search_vector)",
]
