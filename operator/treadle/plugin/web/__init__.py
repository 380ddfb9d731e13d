"""The page of `kubectl treadle ui`: static files served as they are (no build step).

vendor/dagre-3.1.3.min.js is @dagrejs/dagre 3.1.3 from npm (MIT, vendor/dagre-LICENSE.txt),
unchanged: it lays the task graph out.
"""
