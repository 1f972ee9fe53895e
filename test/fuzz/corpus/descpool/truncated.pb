
©
s.protos"Î
M
a (Ra
b