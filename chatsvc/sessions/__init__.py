"""
What every connection of every door shares: the limits they are held to (L{limits}), who they come
from (L{addresses}), the admission that counts them all together and closes them all on shutdown
(L{admission}), and the process's one outbox, which gathers their writes per reactor turn
(L{outbox}). A door's connection takes part by providing L{interfaces.ISession}.
"""
