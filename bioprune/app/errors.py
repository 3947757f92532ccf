"""User-facing errors: a bad request becomes one clear message in the UI, never a traceback.

Pure code raises :class:`UserError` (or bioprune's ``InputError``/``ValueError`` from validation);
:func:`user_facing` wraps a Gradio handler so those become ``gr.Error`` with the message, and any
other exception is logged with its traceback on the server and shown as a short generic message.
"""
from __future__ import annotations

import functools
import logging

logger = logging.getLogger(__name__)


class UserError(ValueError):
    """A request the app refuses, with a message written for the person using it."""


def user_facing(action: str):
    """Decorator for Gradio handlers: UserError -> gr.Error(message); anything else -> a generic gr.Error.

    ``action`` names what failed in the generic message ("annotating", "the batch run").
    """
    def wrap(fn):
        @functools.wraps(fn)
        def handler(*args, **kwargs):
            import gradio as gr

            try:
                return fn(*args, **kwargs)
            except gr.Error:
                raise
            except UserError as err:
                logger.info("refused %s: %s", action, err)
                raise gr.Error(str(err), print_exception=False) from None
            except Exception as err:  # noqa: BLE001 - the UI gets a message, the log the traceback
                logger.exception("%s failed", action)
                raise gr.Error(f"Something went wrong while {action} ({type(err).__name__}). The error was "
                               "logged on the server; try again or with other input.", print_exception=False) from None
        return handler
    return wrap
