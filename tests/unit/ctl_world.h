/* A controller's world for tests and benchmarks: a real cluster state,
 * the leader's liveness view and a controller, with members that heartbeat
 * while alive and agents that report instantly (a copying replica on an
 * alive member is in sync, a releasing primary on one has released). Every
 * command goes through the codec and corral_state_apply, as on a node. */
#ifndef CORRAL_TESTS_CTL_WORLD_H
#define CORRAL_TESTS_CTL_WORLD_H

#include <stdbool.h>
#include <stdint.h>

#include "core/controller.h"
#include "core/liveness.h"
#include "core/placement.h"
#include "core/state.h"

/* Member ids the world tracks (ids are given out from 1, never reused). */
#define WORLD_IDS_MAX 8192u

struct ctl_world;

/* Called with every command before it is applied (checks). */
typedef void (*world_check_cb)(struct ctl_world *w, const struct corral_state_cmd *cmd, void *arg);

struct ctl_world {
    struct corral_state *st;
    struct corral_liveness lv;
    struct corral_controller *ctl;
    uint64_t index;  /* last applied */
    uint64_t now_ms; /* the leader's clock */
    bool alive[WORLD_IDS_MAX];
    uint64_t applied, refused; /* commands */
    world_check_cb check;
    void *check_arg;
};

/* Aborts on allocation failure (tests and benchmarks only). */
void world_init(struct ctl_world *w, const struct corral_controller_config *cfg,
                uint64_t took_office_ms);
void world_close(struct ctl_world *w);

/* Encodes and applies c; returns the state's status. */
uint8_t world_apply(struct ctl_world *w, const struct corral_state_cmd *c);
/* MEMBER_PUT (new or rejoin) of an alive member; aborts unless applied. */
uint32_t world_member(struct ctl_world *w, const char *name, const char *zone, uint16_t weight,
                      uint8_t role);
void world_status(struct ctl_world *w, uint32_t id, uint8_t status);
uint32_t world_resource(struct ctl_world *w, const char *name, uint32_t partitions,
                        uint8_t replicas);

/* Advances the clock; every alive member heartbeats at the new instant. */
void world_tick(struct ctl_world *w, uint64_t ms);
/* One evaluation, its commands applied in order (check first). Returns the
 * number of commands refused; *out, when not NULL, gets the output. */
uint32_t world_step(struct ctl_world *w, struct corral_controller_output *out);
/* Instant agents: every report the alive members would send, turned into
 * commands and applied. Returns the commands applied. */
uint32_t world_report_all(struct ctl_world *w);
/* tick + step + reports until an evaluation proposes nothing and nothing
 * is in flight or out of target; returns the rounds, or 0 when max_rounds
 * ran out first. */
uint32_t world_converge(struct ctl_world *w, uint32_t max_rounds, uint64_t tick_ms);

/* The placement members as the controller sees them (workers, active,
 * heartbeating; zones numbered in sorted order). n receives the count. */
struct corral_placement_member *world_hosts(struct ctl_world *w, uint32_t *n);
/* The resource's map from the state (primary first), allocated. */
void world_map(struct ctl_world *w, uint32_t resource, struct corral_placement_map *map);
/* True when every partition of the resource equals the controller's
 * target, every one has a primary, all replicas are in sync, and the map
 * passes corral_placement_check with no violation and no imbalance. */
bool world_balanced(struct ctl_world *w, uint32_t resource);

#endif
