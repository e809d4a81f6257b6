"""The tools of the ``aiops`` command: the command line, the demo, the local broker and the producer library."""
