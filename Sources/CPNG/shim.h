// libpng's simplified read API (Debian: libpng-dev).
#include <png.h>
