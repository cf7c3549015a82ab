from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.store import migrate
from app.store.models import Base
from tests.conftest import DATABASE_URL


def _diff(engine):
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, Base.metadata)


def test_upgrade_downgrade_upgrade_and_no_drift(engine, db):
    assert _diff(engine) == []
    migrate.downgrade(DATABASE_URL, "base")
    engine.dispose()
    tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
    assert tables == set()
    migrate.upgrade(DATABASE_URL, "head")
    engine.dispose()
    assert set(inspect(engine).get_table_names()) >= {t.name for t in Base.metadata.sorted_tables}
    assert _diff(engine) == []


def test_migration_files_are_named_by_date_and_slug():
    import re

    names = [
        p.name
        for p in migrate.MIGRATIONS_DIR.joinpath("versions").glob("*.py")
        if p.name != "__init__.py"
    ]
    assert names and all(re.fullmatch(r"\d{4}_\d{2}_\d{2}_[a-z0-9_]+\.py", n) for n in names), names
