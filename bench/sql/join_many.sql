-- The batched join: 100 anonymous tickets of room 'bench' in one call (what the service sends when joins arrive together).
select count(*) from waitroom.join_many('bench', 100);
