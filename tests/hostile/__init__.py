"""The hostile-input, fault and leak suite (issue 6): fedbearer attacked the way the world will.

Every test uses real sockets, processes and servers on loopback only, states the behaviour it
checks in its name, and is bounded in time. Resource checks compare counts (fds, threads, tasks,
RSS) before and after with generous margins, never timings against each other. See SECURITY.md
for the promises and which test covers each.
"""
