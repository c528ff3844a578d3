"""
Several nodes, one chat: the cluster backend, on Redis (C{twistd -n chatroom --redis URL}).

Each node keeps its own members' connections, and a copy of every member of the other nodes in
its hub (L{chatsvc.cluster.node.RemoteMember}), so that rooms, member lists, counts and
nicknames are the same from every node. What a node's members do is published once on Redis
(L{chatsvc.cluster.node.ClusterNode}, the hub's relay); every other node applies it to its
copies and fans it out to its own members. Nicknames are claimed atomically in Redis; each node
holds a lease that it keeps renewing, and the others free the members and nicknames of a node
whose lease ran out. The durable state (accounts, moderation, history) has its one home in
Redis too (L{chatsvc.cluster.stores}, kept in step between nodes by L{chatsvc.cluster.shared}),
and L{chatsvc.cluster.migrate} moves a single node's SQLite file there. docs/cluster.md says
it all for those who run it.
"""
