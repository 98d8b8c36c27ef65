"""Signing in: login, logout, whoami."""

from __future__ import annotations

import functools
from typing import Any

import click

from .. import auth
from ..connect import connect
from ..terminal import safe_text
from .base import _bundle, _log_to_stderr, cli, echo_json, settings_from


def auth_options(f):
    """Who to sign in as, as the settings they override: one ``auth_flags`` argument."""

    @functools.wraps(f)
    def command(*args, tenant, client_id, client_secret, certificate, thumbprint, **kwargs):
        flags = {
            "tenant_id": tenant,
            "client_id": client_id,
            "client_secret": client_secret,
            "certificate_path": certificate,
            "certificate_thumbprint": thumbprint,
        }
        return f(*args, auth_flags=flags, **kwargs)

    return _bundle(
        click.option("--tenant", help="Directory (tenant) id [env GROUPSYNC_TENANT_ID]."),
        click.option("--client-id", help="Application (client) id [env GROUPSYNC_CLIENT_ID]."),
        click.option(
            "--client-secret",
            help="Client secret for --app; prefer env GROUPSYNC_CLIENT_SECRET over this flag.",
        ),
        click.option(
            "--certificate",
            type=click.Path(exists=True, dir_okay=False),
            help="Certificate (PEM or PFX) for --app [env GROUPSYNC_CERTIFICATE_PATH].",
        ),
        click.option("--thumbprint", help="SHA-1 thumbprint of a PEM certificate."),
    )(command)


@cli.command()
@click.option("--app", is_flag=True, help="Client credentials (app-only) for unattended archives.")
@auth_options
@click.pass_context
def login(ctx, app, auth_flags):
    """Sign in: device code for a person, or client credentials with --app."""
    settings = settings_from(ctx, **auth_flags, auth_mode="app" if app else None)
    if settings.auth_mode == "app":
        identity = auth.login_app(settings)
    else:
        identity = auth.login_device(
            settings, lambda message: click.echo(safe_text(message), err=True)
        )
    click.echo(safe_text(f"Signed in: {_identity_line(identity)}"), err=True)


@cli.command()
@click.pass_context
def logout(ctx):
    """Forget the cached tokens (deletes the token cache file)."""
    settings = settings_from(ctx)
    removed = auth.logout(settings)
    click.echo("Signed out." if removed else "Nothing to sign out of.", err=True)


@cli.command()
@click.option("--live", is_flag=True, help="Also ask Graph who the token belongs to (/me).")
@click.pass_context
def whoami(ctx, live):
    """Show the identity whose tokens are cached (never the tokens)."""
    settings = settings_from(ctx)
    if settings.access_token:
        identity: dict[str, Any] = {"mode": "access-token"}
    else:
        identity = auth.whoami(settings)
    if live:
        with _client(ctx, settings) as graph:
            me = graph.get_me()
        identity["me"] = {k: me.get(k) for k in ("id", "displayName", "userPrincipalName", "mail")}
    echo_json(identity)


def _identity_line(identity: dict[str, Any]) -> str:
    who = identity.get("username") or identity.get("app_id") or "unknown"
    return f"{who} ({identity.get('mode')}, tenant {identity.get('tenant_id')})"


def _client(ctx, settings, token=None):
    return connect(
        settings, token=token, log=_log_to_stderr(ctx.find_root().obj.get("verbose", False))
    )


