# cmake -DIN=file -DOUT=file.c -DNAME=symbol -P embed.cmake
# Writes a C file holding IN's bytes as `const unsigned char NAME[]` (NUL-terminated)
# and `const size_t NAME_len` (without the NUL): pages served by the admin listener.
file(READ ${IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," arr "${hex}")
file(WRITE ${OUT} "/* generated from ${IN} by cmake/embed.cmake */\n#include <stddef.h>\n"
  "const unsigned char ${NAME}[] = {${arr}0x00};\nconst size_t ${NAME}_len = sizeof(${NAME}) - 1;\n")
