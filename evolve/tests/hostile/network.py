"""Hostile: opens a network connection (an outside address by default, or host/port from params)."""
import socket

from pydantic import BaseModel

from agentmem.memory import MemoryProgram
from agentmem.types import Recall, RecallItem


class Params(BaseModel):
    host: str = "1.1.1.1"
    port: int = 80


class Network(MemoryProgram):
    Params = Params

    def recall(self, query):
        s = socket.create_connection((self.params.host, self.params.port), timeout=2)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        return Recall(items=[RecallItem(content=s.recv(100).decode("latin-1"))])
