"""Hostile (audit-hook-only mode, run as root): makes a file in its scratch immutable, so that the
controller's rmtree cannot remove the scratch directory.

fcntl.ioctl is not denied; FS_IOC_SETFLAGS with FS_IMMUTABLE_FL needs CAP_LINUX_IMMUTABLE, which a
worker started by root holds (no jail drops it). The scratch directory stays in the temp dir.
"""
import fcntl
import os
import struct

from agentmem.memory import MemoryProgram
from agentmem.types import Recall, RecallItem

FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_IMMUTABLE_FL = 0x80086601, 0x40086602, 0x10


class ImmutableScratch(MemoryProgram):
    def observe(self, event):
        with open("stuck.txt", "w") as fh:
            fh.write("cannot remove me")
        fd = os.open("stuck.txt", os.O_RDONLY)
        try:
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("i", FS_IMMUTABLE_FL))
        except OSError:
            pass
        finally:
            os.close(fd)

    def recall(self, query):
        return Recall(items=[RecallItem(content="done")])
