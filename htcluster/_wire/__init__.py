"""The wire core: calls to frames, frames to checked replies; no sockets, clocks or threads.

:class:`~htcluster._wire.codec.Codec` encodes one connection's calls and
decodes its replies; :class:`~htcluster._wire.frames.FrameReader` cuts
received bytes into frames.  Every I/O flavour (the blocking connection, the
multiplexing loop) feeds these same objects.
"""
from .codec import (ANSWERS, BROKER_METHODS, DEFAULT_MAX_FRAME_SIZE, HARD_MAX_FRAME_SIZE, LENGTH, NAMESPACED_METHODS,
                    Codec)
from .frames import RECV_CHUNK, FrameReader

__all__ = ["ANSWERS", "BROKER_METHODS", "Codec", "DEFAULT_MAX_FRAME_SIZE", "FrameReader", "HARD_MAX_FRAME_SIZE",
           "LENGTH", "NAMESPACED_METHODS", "RECV_CHUNK"]
