# Bench-only: linked into the unix ports bench/unixport.py builds (see qterm_host.c).
SRC_USERMOD_LIB_C += $(USERMOD_DIR)/qterm_host.c
