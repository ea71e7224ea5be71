"""``tinykd distill``, teacher → transfer set → students in one resumable command: :mod:`.pipeline`
(``distill``, ``distill_item``, the report) over the stages :mod:`.rows`, :mod:`.teacher`, :mod:`.copies`
(with :mod:`.augment`) and :mod:`.students`, cached by :mod:`.stages`; :mod:`.job` holds the typed job."""
