"""The link between processes: edges to shards, and shards to each other.

``wire`` is the format of the messages a link carries (requests, responses, pushes, surveys,
replication) and ``client`` the side that opens a link. Edges and origins both import this
package; it imports neither of them.
"""
