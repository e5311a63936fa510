"""The ML Metadata connection: SQLite in the home, or MySQL (password only from the environment)."""
from __future__ import annotations

import os
from pathlib import Path

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline.configs import PipelineConfig

# The MySQL password is only ever read from the environment, at connection time.
MYSQL_PASSWORD_ENV = "CONVEYOR_MYSQL_PASSWORD"


def sqlite_config(path: Path) -> metadata_store_pb2.ConnectionConfig:
    path.parent.mkdir(parents=True, exist_ok=True)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return config


def mysql_config(host: str, port: int, database: str, user: str, password: str) -> metadata_store_pb2.ConnectionConfig:
    config = metadata_store_pb2.ConnectionConfig()
    config.mysql.host = host
    config.mysql.port = port
    config.mysql.database = database
    config.mysql.user = user
    config.mysql.password = password
    return config


def connection_config(config: PipelineConfig) -> metadata_store_pb2.ConnectionConfig:
    """MySQL when config.mysql_host is set (password from $CONVEYOR_MYSQL_PASSWORD), else SQLite."""
    if config.mysql_host:
        password = os.environ.get(MYSQL_PASSWORD_ENV, "")
        return mysql_config(config.mysql_host, config.mysql_port, config.mysql_database, config.mysql_user, password)
    return sqlite_config(config.metadata_path)


def describe(connection: metadata_store_pb2.ConnectionConfig) -> str:
    """Where a connection points, without the password."""
    if connection.HasField("mysql"):
        mysql = connection.mysql
        return f"mysql://{mysql.user}@{mysql.host}:{mysql.port}/{mysql.database}"
    return f"sqlite:{connection.sqlite.filename_uri}"


def store_exists(config: PipelineConfig) -> bool:
    """False only for a SQLite store not created yet (a MySQL server is assumed to exist)."""
    return bool(config.mysql_host) or config.metadata_path.exists()


def open_store(config: metadata_store_pb2.ConnectionConfig) -> metadata_store.MetadataStore:
    return metadata_store.MetadataStore(config)


def open_metadata(config: PipelineConfig) -> metadata_store.MetadataStore:
    """The MLMD store of `config`, for reading; a clear error if no run was ever recorded there."""
    if not store_exists(config):
        raise FileNotFoundError(
            f"no pipeline runs recorded under {config.home} ({config.metadata_path} does not exist): "
            "run `make run` first, or point CONVEYOR_HOME (or --home) at a Conveyor home"
        )
    return open_store(connection_config(config))
