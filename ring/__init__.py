"""Placement and membership: the hash ring and replica sets."""

from skyrelay.ring.hashring import Member, Ring, ShardLike, moved_channels

__all__ = ["Member", "Ring", "ShardLike", "moved_channels"]
