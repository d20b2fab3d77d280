"""Compatibility import for users of the original ``zarrswift`` package.

``from zarrswift import SwiftStore`` keeps working; new code should import ``swiftzarr_batch``.
"""

from swiftzarr_batch import SwiftStore, acquire_token

__all__ = ["SwiftStore", "acquire_token"]
