"""``runyard bench``: end-to-end figures of Runyard, one JSON line each on stdout.

Shipped beside the ``runyard`` package, not inside it: ``runyard`` never imports it. The
``runyard bench`` command reaches it through the ``runyard.commands`` entry point group
(:mod:`runyard_bench.cli`). Modules, each importing only those above it:

* :mod:`~runyard_bench.workflows`: the workflows measured, and the yards the worker
  processes serve;
* :mod:`~runyard_bench.harness`: options, output, databases, worker processes, CPU;
* :mod:`~runyard_bench.counting`: statements per run, through the store's observer;
* :mod:`~runyard_bench.server`: a ``runyard server`` process;
* :mod:`~runyard_bench.http_clients`: the HTTP load generator (a process of its own,
  aiohttp: the ``bench`` extra);
* :mod:`~runyard_bench.http_figures`: the HTTP figures through a ``runyard server``;
* :mod:`~runyard_bench.throughput`: the engine figures of one backend, and the whole run;
* :mod:`~runyard_bench.clone` and :mod:`~runyard_bench.purge`: the bulk fill, the size
  readings and the purging process of the scale figures;
* :mod:`~runyard_bench.scale`: ``runyard bench --scale``;
* :mod:`~runyard_bench.cli`: the ``runyard bench`` command.
"""
