/* SPDX-License-Identifier: MIT */
#pragma once

/* The desks' routes (/v1/desks...), src/daemon/api-desk.c. */

#include "daemon.h"
#include "../session/session.h"

int api_desk_register(Daemon *d, SessionHost *h);
