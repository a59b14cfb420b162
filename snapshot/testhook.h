/* Pauses for tests: a step of create or restore waits at a chosen moment
 * while a test changes the tree under it, so that races the code must
 * survive (a directory swapped for a symbolic link) can be tested
 * deterministically instead of by luck.
 *
 * The variable names a FIFO.  The step opens it for reading, which blocks
 * until the test opens it for writing (the test then knows the step has
 * arrived), and reads until the test closes it (the change is made).
 * Unset, as always outside tests, a hook costs one getenv. */
#pragma once

/* Wait as described if environment variable `env` is set; only the first
 * call per variable waits (hooks sit in loops run by many threads). */
void test_hook_wait(const char *env);
