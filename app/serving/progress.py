"""How long computations report progress, and how a user stops one.

Every heavy function in app/ takes `progress: Progress | None`. It is called as
`progress(done, total)` after each unit of work; it may raise `Cancelled`
(app.base.errors) to stop the work, which the function lets propagate after leaving
no state behind. One convention for all analyses, so the pages' progress bars and
cancel buttons work the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int], None]
