// libjpeg-turbo's TurboJPEG v2 API (Debian: libturbojpeg0-dev).
#include <turbojpeg.h>
