
u
p2.protoqs.proto"]
G
grp (
2.q.G.GrpRgrp
m (2.s.MRm
r (BRr
Grp
x (:3Rx