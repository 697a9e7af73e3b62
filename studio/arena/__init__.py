"""Blind A/B votes on cut-outs, and the ratings they give.

    from studio.arena.db import ArenaDB            # the votes (SQLite, WAL), CSV in and out
    from studio.arena.ratings import preference    # {variant: rating, ci95, votes, shown}
    from studio.arena.pairing import next_pick     # the next (pair, image) to judge
    from studio.arena.images import open_set       # the images, by set spec (check_spec: the one resolver)
    from studio.arena.rounds import next_round, vote  # the game: rounds, votes, standings, CSV

This package sits below `studio.bench` (which may read `preference`), so it never imports
`studio.bench`; its cut-outs come from `studio.engine.cutout` (the benchmark's prediction cache,
else the pooled runner). The app's Arena tab (`studio.ui.arena`) only adds the page's parts.
"""
