"""Blind A/B votes on cut-outs, and the ratings they give.

    from studio.arena.db import ArenaDB            # the votes (SQLite, WAL), CSV in and out
    from studio.arena.ratings import preference    # {variant: rating, ci95, votes, shown}
    from studio.arena.pairing import next_pick     # the next (pair, image) to judge
    from studio.arena.images import open_set       # the images, by set spec

This package sits below `studio.bench` (which may read `preference`), so it never imports
`studio.bench`; the app's Arena tab (`studio.ui.arena`) makes the cut-outs through the
benchmark's prediction cache and the engine.
"""
