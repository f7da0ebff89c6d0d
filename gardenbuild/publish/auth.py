"""Globus credentials for publishing: what `gardenbuild login`, `logout` and `whoami` do.

Two kinds of identity, chosen by the environment:

- a person, through Globus Auth's native-app flow (the command line prints a link and
  asks for the code). Refresh tokens are kept in ``<user config dir>/gardenbuild/
  globus-tokens.json``, mode 0600 in a 0700 folder, and nowhere else;
- a service account (CI), when ``GLOBUS_COMPUTE_CLIENT_ID`` and
  ``GLOBUS_COMPUTE_CLIENT_SECRET`` are set: client credentials, with tokens held in
  memory only, so a CI run writes no token anywhere.

No call here starts a login by itself: missing or expired credentials raise
`LoginRequired`, whose hint names the command that fixes it. Messages never include a
token or a secret.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gardenbuild.errors import GardenError

if TYPE_CHECKING:
    import globus_sdk

#: The Globus Compute SDK's registered native-app client: gardenbuild logs in as it does.
NATIVE_CLIENT_ID = "4cf29807-cf21-49ec-9443-ff9a3fb9f81c"
CLIENT_ID_VAR = "GLOBUS_COMPUTE_CLIENT_ID"
CLIENT_SECRET_VAR = "GLOBUS_COMPUTE_CLIENT_SECRET"
TOKEN_FILE = "globus-tokens.json"
APP_NAME = "gardenbuild"
INSTALL_HINT = "install the publish extra: pip install 'gardenbuild[publish]'"


class AuthError(GardenError):
    """Globus Auth refused us, or the credentials given are unusable."""

    exit_code = 2


class LoginRequired(AuthError):
    """No usable credentials; the hint says which command fixes it."""


class ServiceError(GardenError):
    """A Globus service failed or could not be reached."""


def _sdk() -> Any:
    try:
        import globus_sdk
    except ImportError:
        raise GardenError("globus-sdk is not installed", hint=INSTALL_HINT) from None
    return globus_sdk


# --------------------------------------------------------------------------- where and who


def token_path() -> Path:
    """Where a person's tokens live: the user config dir (``$XDG_CONFIG_HOME`` on Linux)."""
    from platformdirs import user_config_path

    return user_config_path(APP_NAME) / TOKEN_FILE


def client_credentials(environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """``(client id, secret)`` from the environment, None when neither is set."""
    env = os.environ if environ is None else environ
    client_id, secret = env.get(CLIENT_ID_VAR) or None, env.get(CLIENT_SECRET_VAR) or None
    if client_id and secret:
        return client_id, secret
    if client_id or secret:
        given, missing = (CLIENT_ID_VAR, CLIENT_SECRET_VAR) if client_id else (CLIENT_SECRET_VAR, CLIENT_ID_VAR)
        raise AuthError(
            f"{given} is set but {missing} is not",
            hint=f"set both for a service account (CI), or unset {given} and log in as yourself: gardenbuild login",
        )
    return None


def _scopes() -> dict[str, list[Any]]:
    from globus_sdk.scopes import AuthScopes, ComputeScopes

    return {
        ComputeScopes.resource_server: [ComputeScopes.all],
        AuthScopes.resource_server: [AuthScopes.openid, AuthScopes.profile, AuthScopes.email],
    }


def make_app(
    *,
    environ: Mapping[str, str] | None = None,
    path: Path | None = None,
    login_flow_manager: Any = None,
    environment: str | None = None,
) -> "globus_sdk.GlobusApp":
    """The Globus app for this process: a ``ClientApp`` when client credentials are in
    the environment (tokens in memory), else a ``UserApp`` over the token file.

    Token validation errors are not auto-resolved by a login flow: commands other than
    `gardenbuild login` must never prompt; they raise `LoginRequired` instead.
    """
    sdk = _sdk()
    from globus_sdk.token_storage import JSONTokenStorage, MemoryTokenStorage

    creds = client_credentials(environ)
    common: dict[str, Any] = {"token_validation_error_handler": None}
    if environment:
        common["environment"] = environment
    if creds is not None:
        config = sdk.GlobusAppConfig(token_storage=MemoryTokenStorage(), **common)
        return sdk.ClientApp(APP_NAME, client_id=creds[0], client_secret=creds[1],
                             scope_requirements=_scopes(), config=config)
    file = path or token_path()
    _private_folder(file.parent)
    config = sdk.GlobusAppConfig(token_storage=JSONTokenStorage(str(file)), request_refresh_tokens=True,
                                 login_flow_manager=login_flow_manager, **common)
    return sdk.UserApp(APP_NAME, client_id=NATIVE_CLIENT_ID, scope_requirements=_scopes(), config=config)


def is_service_account(app: Any) -> bool:
    return type(app).__name__ == "ClientApp"


def _private_folder(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)


def _stored_file(app: Any) -> Path | None:
    path = getattr(app.token_storage.token_storage, "filepath", None)
    return Path(path) if path else None


def _lock_down(app: Any) -> None:
    """globus-sdk writes the token file under a 0177 umask; make sure of 0600 anyway
    (a file that existed before, or was copied in, keeps its old mode otherwise)."""
    path = _stored_file(app)
    if path is not None and path.exists():
        os.chmod(path, 0o600)


# --------------------------------------------------------------------------- errors


def login_hint(app: Any) -> str:
    if is_service_account(app):
        return f"check {CLIENT_ID_VAR} and {CLIENT_SECRET_VAR} (a service account's client id and secret)"
    return "run: gardenbuild login"


def translate(exc: BaseException, app: Any, doing: str) -> GardenError:
    """A globus-sdk exception as one of ours, with the command that fixes it.

    ``doing`` completes "... while <doing>". The message carries the service's error
    code and text, never request headers (where the tokens are).
    """
    sdk = _sdk()
    from globus_sdk.gare import is_gare
    from globus_sdk.token_storage import TokenValidationError

    if isinstance(exc, GardenError):
        return exc
    if isinstance(exc, EOFError):  # the native-app flow needs someone to paste the code
        return LoginRequired(f"{doing} needs an interactive terminal",
                             hint=f"in CI, set {CLIENT_ID_VAR} and {CLIENT_SECRET_VAR} instead of logging in")
    if isinstance(exc, TokenValidationError) or (isinstance(exc, sdk.GlobusAPIError) and is_gare(exc.raw_json or {})):
        return LoginRequired(f"no valid Globus credentials for {doing}", hint=login_hint(app))
    if isinstance(exc, sdk.AuthAPIError) and exc.http_status in (400, 401):
        # invalid_grant: the refresh token expired or was revoked
        hint = login_hint(app) + ("" if is_service_account(app) else " --force")
        return LoginRequired(f"Globus Auth rejected the stored credentials while {doing} ({exc.code})", hint=hint)
    if isinstance(exc, sdk.GlobusAPIError):
        if exc.http_status in (401, 403):
            return LoginRequired(f"Globus refused the request while {doing}: {exc.http_status} {exc.code}",
                                 hint=login_hint(app) + ("" if is_service_account(app) else " --force"))
        return ServiceError(f"Globus answered {exc.http_status} {exc.code} while {doing}: {exc.message}")
    if isinstance(exc, sdk.NetworkError):
        return ServiceError(f"cannot reach Globus while {doing} ({type(exc).__name__})",
                            hint="check the network connection (and any proxy settings), then try again")
    return ServiceError(f"{doing} failed: {type(exc).__name__}: {exc}")


def require_login(app: Any) -> None:
    """Raise `LoginRequired` unless the app holds usable tokens for every scope we need.

    A service account's tokens come from its credentials here; a person's only from
    `gardenbuild login`.
    """
    sdk = _sdk()
    if is_service_account(app):
        try:
            app.login()
        except Exception as e:  # noqa: BLE001 - any failure is translated
            raise translate(e, app, "getting tokens with the client credentials") from None
        return
    try:
        required = app.login_required()
    except sdk.GlobusError as e:
        raise translate(e, app, "reading the stored Globus tokens") from None
    if required:
        raise LoginRequired("not logged in to Globus (or the login lacks a scope gardenbuild needs)",
                            hint=login_hint(app))


# --------------------------------------------------------------------------- the commands


def login(app: Any, *, force: bool = False) -> dict[str, Any]:
    """Log in (the native-app flow prompts on the terminal), or check a service account's
    credentials; return `whoami` plus where the tokens are kept."""
    if is_service_account(app):
        require_login(app)
    else:
        try:
            app.login(force=force)
        except Exception as e:  # noqa: BLE001
            raise translate(e, app, "logging in") from None
        _lock_down(app)
    info = whoami(app)
    info["token_file"] = None if is_service_account(app) else str(_stored_file(app))
    return info


def logout(app: Any) -> dict[str, Any]:
    """Revoke and forget the stored tokens. Offline, the local copy is removed anyway
    (and the result says revocation did not happen)."""
    sdk = _sdk()
    if is_service_account(app):
        return {"removed": False, "revoked": False, "service_account": True, "token_file": None}
    inner = app.token_storage.token_storage
    had = bool(inner.get_token_data_by_resource_server())
    revoked = had
    try:
        app.logout(sweep=True)
    except (sdk.GlobusAPIError, sdk.NetworkError):
        revoked = False
        for resource_server in list(inner.get_token_data_by_resource_server()):
            inner.remove_token_data(resource_server)
    path = _stored_file(app)
    if path is not None and path.exists() and not inner.get_token_data_by_resource_server():
        path.unlink()
    return {"removed": had, "revoked": revoked, "service_account": False, "token_file": str(path) if path else None}


def whoami(app: Any) -> dict[str, Any]:
    """Who the stored (or service-account) credentials belong to, from Globus Auth."""
    require_login(app)
    sdk = _sdk()
    try:
        info = sdk.AuthClient(app=app).userinfo()
    except Exception as e:  # noqa: BLE001
        raise translate(e, app, "asking Globus Auth who you are") from None
    return {
        "identity_id": info.get("sub"),
        "username": info.get("preferred_username"),
        "name": info.get("name"),
        "email": info.get("email"),
        "service_account": is_service_account(app),
    }
